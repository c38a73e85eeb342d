"""Who the bot's events notify, decided once in the engine for every plugin (issue 20): every
event of every type carries ``m.mentions`` and the mention limits; a message *for* someone
notifies exactly them; files never go to a whole room; links carry ``via``; and what the bot
owes a person is never dropped by the flood guard."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from civicbot.core.events import Message, matrix_to, via_servers
from civicbot.core.outgoing import Outgoing
from civicbot.policy.limits import SendPacer
from civicbot.testing.harness import MODERATOR, BotHarness
from civicbot.transport.fake import FakeTransport

ANN, BOB, CAT = "@ann:test", "@bob:test", "@cat:test"
TWELVE = [f"@neighbour{n:02}:test" for n in range(12)]


def outgoing(transport: FakeTransport) -> Outgoing:
    return Outgoing(transport, "k", SendPacer(per_second=0))


async def test_every_event_type_carries_mentions_and_the_limits():
    """A poll start, a poll end, an edit of a poll and a reaction whose text came from a
    resident: ``@room`` and twelve ids in it ping nobody."""
    transport = FakeTransport()
    transport.add_room("!r:test", [ANN, *TWELVE])
    out = outgoing(transport)
    said = "@room free pizza " + " ".join(TWELVE)
    start = {
        "org.matrix.msc1767.text": said,
        "body": said,
        "org.matrix.msc3381.poll.start": {"question": {"org.matrix.msc1767.text": said}},
    }
    await out.event("!r:test", "org.matrix.msc3381.poll.start", start)
    await out.event(
        "!r:test",
        "org.matrix.msc3381.poll.end",
        {"m.relates_to": {"rel_type": "m.reference", "event_id": "$s"}, "body": said},
    )
    await out.event(
        "!r:test",
        "org.matrix.msc3381.poll.start",
        {"m.new_content": dict(start), "m.relates_to": {"rel_type": "m.replace", "event_id": "$s"}},
    )
    await out.event(
        "!r:test",
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$s", "key": "✋"}},
    )
    assert len(transport.sent) == 4
    for sent in transport.sent:
        assert sent.content["m.mentions"] == {}, sent
        for key in ("body", "org.matrix.msc1767.text"):
            if key in sent.content:
                assert "@room" not in sent.content[key]
                assert not any(user in sent.content[key] for user in TWELVE)
    assert transport.sent[2].content["m.new_content"]["m.mentions"] == {}


async def test_a_moderators_poll_may_ping_the_room():
    transport = FakeTransport()
    transport.add_room("!r:test", [ANN])
    await outgoing(transport).event(
        "!r:test", "org.matrix.msc3381.poll.start", {"body": "@room vote"}, may_ping_room=True
    )
    assert transport.sent[0].content["m.mentions"] == {}  # the text alone never pings
    assert transport.sent[0].content["body"] == "@room vote"


async def test_a_message_for_someone_notifies_exactly_them():
    """In a room where they are everyone but the bot: m.text mentioning them. In a bigger
    room: a silent notice there, and each of them is told by DM with a link to it."""
    transport = FakeTransport()
    transport.add_room("!intro:test", [ANN, BOB])
    transport.add_room("!street:test", [ANN, BOB, CAT])
    out = outgoing(transport)
    await out.message(
        "!intro:test", Message("Meet each other", notify=(ANN, BOB)), may_ping_room=False
    )
    intro = transport.sent[-1].content
    assert intro["msgtype"] == "m.text" and intro["m.mentions"] == {"user_ids": [ANN, BOB]}

    event_id = await out.message(
        "!street:test", Message("Your reminder", notify=(ANN,)), may_ping_room=False
    )
    in_room = next(s for s in transport.sent if s.room_id == "!street:test")
    assert in_room.content["msgtype"] == "m.notice"
    direct = await transport.direct_room(ANN)
    told = [s for s in transport.sent if s.room_id == direct]
    assert len(told) == 1 and told[0].content["msgtype"] == "m.text"
    assert told[0].content["m.mentions"] == {"user_ids": [ANN]}
    assert "Your reminder" in told[0].body and event_id in told[0].body
    assert not [s for s in transport.sent if s.room_id == await transport.direct_room(BOB)]


async def test_a_file_never_goes_to_a_whole_room():
    transport = FakeTransport()
    transport.add_room("!street:test", [ANN, BOB, CAT])
    with pytest.raises(ValueError, match="direct message"):
        await outgoing(transport).file("!street:test", b"x", "m.ics", "text/calendar")
    assert not transport.sent
    direct = await transport.direct_room(ANN)
    await outgoing(transport).file(direct, b"x", "m.ics", "text/calendar")
    assert transport.sent[-1].content["m.mentions"] == {}


def test_via_servers_follow_the_spec():
    members = ["@a:big.org", "@b:big.org", "@c:big.org", "@mod:small.org", "@d:mid.org",
               "@e:mid.org", "@f:tiny.org", "@g:10.0.0.1"]  # fmt: skip
    assert via_servers(members, {"@mod:small.org": 100}) == ["small.org", "big.org", "mid.org"]
    # Nobody at 50 or more: by population only; an IP literal never.
    assert via_servers(members, {"@mod:small.org": 10}) == ["big.org", "mid.org", "small.org"]
    acl = {"allow": ["*"], "deny": ["big.org"]}
    assert via_servers(members, {}, acl) == ["mid.org", "small.org", "tiny.org"]
    link = matrix_to("!r", "$e", ["x.org", "y.org"])
    assert link == "https://matrix.to/#/!r/$e?via=x.org&via=y.org"


async def test_links_made_by_any_plugin_carry_via(tmp_path):
    async with BotHarness.create(tmp_path) as h:
        room = h.room(members=[ANN, "@bob:elsewhere.org", "@cat:elsewhere.org"])
        await h.say(room, ANN, "!ping")
        # matrix.to carries the query inside the fragment, as clients parse it.
        fragment = urlsplit(matrix_to(room, "$event")).fragment
        # The room's moderator is on "test" (power 50), then the most populous server.
        assert parse_qs(fragment.split("?", 1)[1])["via"] == ["test", "elsewhere.org"]


async def test_what_the_bot_owes_a_person_is_never_dropped_by_the_flood_guard(tmp_path):
    """A resident over the flood limit raises a hand on a need: the person who asked still
    hears about the offer and the helper gets the receipt (issue 20 §4), whatever the time."""
    async with BotHarness.create(
        tmp_path, limits={"person_burst": 2, "cooldown_seconds": 3600}
    ) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, BOB, "!need help carrying shopping upstairs | this week")
        post = next(s for s in h.transport.sent if s.room_id == room and "!can N-1" in s.body)
        for _ in range(4):  # Ann floods: two answered, a notice, then silence
            await h.say(room, ANN, "!ping")
        assert sum("That's a lot of commands" in t for t in h.texts(room)) == 1
        await h.send(
            room,
            ANN,
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": post.event_id, "key": "✋"}},
        )
        bob_dm = await h.transport.direct_room(BOB)
        asked = [s for s in h.transport.sent if s.room_id == bob_dm and "offers to help" in s.body]
        assert len(asked) == 1
        # It is for Bob: his client notifies him.
        assert asked[0].content["msgtype"] == "m.text"
        assert asked[0].content["m.mentions"] == {"user_ids": [BOB]}
        ann_dm = await h.transport.direct_room(ANN)
        assert "I've asked the person who needs N-1" in h.last_text(ann_dm)
        assert MODERATOR not in str(asked[0].content)


async def test_via_follows_the_room_as_people_join(tmp_path):
    """A membership change makes the core work the servers out again."""
    async with BotHarness.create(tmp_path) as h:
        room = h.room(members=[ANN])
        await h.say(room, ANN, "!ping")
        assert "via=elsewhere.org" not in matrix_to(room)
        newcomers = ["@x:elsewhere.org", "@y:elsewhere.org", "@z:elsewhere.org", "@w:elsewhere.org"]
        for user in newcomers:
            h.transport.rooms[room].members.append(user)
            await h.send(room, user, "m.room.member", {"membership": "join"}, state_key=user)
        # The moderator's server first (power 50), then the most populous.
        assert matrix_to(room).endswith("?via=test&via=elsewhere.org")
