"""The digest plugin through the real bot and a fake transport: what a week of activity makes,
exactly once across restarts, late after downtime, templates an operator overrides or breaks,
personal digests by DM only, and the space-wide digest. Privacy is asserted on the text."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from civicbot_plugins.digest.compose import MAX_MESSAGE_JSON, fit_one_message
from civicbot_plugins.digest.service import latest_slot, week_key

from civicbot.core.events import matrix_to
from civicbot.core.templates import Rendered
from civicbot.testing.harness import MODERATOR, BotHarness

ANN, BOB, CAT = "@ann:test", "@bob:test", "@cat:test"
NO_LIMITS = {"person_burst": 0, "room_burst": 0, "everywhere_burst": 0}
# Look for due digests every 15 minutes, not every minute: these tests wind the clock on by days,
# and every slot they use falls on a quarter hour.
QUARTERLY = {"digest": {"check_every_seconds": 900}}
LONDON = ZoneInfo("Europe/London")
POLL_START = "org.matrix.msc3381.poll.start"
# The harness clock starts on Monday 23 Nov 2026 09:00 UTC; the default digest is Sunday 18:00.
TO_SUNDAY_DIGEST = timedelta(days=6, hours=9)


def digests(h: BotHarness, room: str) -> list[str]:
    return [t for t in h.texts(room) if t.startswith(("📰", "(Preview"))]


async def week_of_activity(h: BotHarness, room: str) -> str:
    """Polls (one secret), a need, a private need, an offer, chat and a busy thread."""
    await h.say(room, ANN, "!poll Which mural? | Birds | Bikes")
    start = next(s for s in h.transport.sent if s.type == POLL_START)
    answer = start.content[POLL_START]["answers"][0]["id"]
    await h.send(room, CAT, "org.matrix.msc3381.poll.response", {
        "m.relates_to": {"rel_type": "m.reference", "event_id": start.event_id},
        "org.matrix.msc3381.poll.response": {"answers": [answer]},
    })  # fmt: skip
    await h.say(room, ANN, "!poll Spend the grant on? | Benches | Lights | secret")
    dm = await h.transport.direct_room(BOB)
    await h.say(dm, BOB, "!vote P-2 2")
    await h.say(room, CAT, "!offer I have a ladder to lend | ongoing")
    await h.say(room, BOB, "!need help moving a sofa on saturday | this week")
    cat_dm = await h.transport.direct_room(CAT)
    await h.say(cat_dm, CAT, "!need a lift to the hospital | this week | room: 1")
    root = await h.say(room, ANN, "Who is coming to the litter pick?")
    for who in (BOB, CAT, BOB):
        await h.say(room, who, "me!", **{"m.relates_to": {"rel_type": "m.thread",
                                                           "event_id": root.event_id}})  # fmt: skip
    await h.send(room, "@dan:test", "m.room.member", {"membership": "join"}, state_key="@dan:test")
    await h.send(room, "@dan:test", "m.room.member", {"membership": "join", "displayname": "D"},
                 state_key="@dan:test")  # fmt: skip
    return root.event_id


async def test_a_week_of_activity_is_posted_once_at_the_rooms_time(tmp_path: Path) -> None:
    async with BotHarness.create(tmp_path, limits=NO_LIMITS, plugins=QUARTERLY) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "hello")  # the first batch: the bot has caught up
        root = await week_of_activity(h, room)
        await h.advance(TO_SUNDAY_DIGEST - timedelta(minutes=1))
        assert not digests(h, room)
        await h.advance(timedelta(minutes=2))
        (digest,) = digests(h, room)
        assert digest.startswith("📰 This week in this room (Sun 22 Nov – Sun 29 Nov)")
        assert "Polls and decisions" in digest and "P-1 Which mural?" in digest
        assert "Offers and needs" in digest or "needs" in digest.lower()
        assert "ladder" in digest and "sofa" in digest
        assert "The week in numbers" in digest
        assert "1 new member" in digest  # Dan's name change is not a second join
        assert f"Busy thread: 3 replies {matrix_to(room, root)}" in digest
        # Nothing private: the secret ballot's choice, the private need's author.
        assert "P-1 Which mural? (closes Mon 30 Nov 09:00 Europe/London; 1 vote so far)" in digest
        assert "P-2 Spend the grant on? (closes Mon 30 Nov 09:00 Europe/London; 1 vote" in digest
        assert "Lights" not in digest and "Benches" not in digest  # no ballot's choice
        assert "hospital" in digest and CAT not in digest  # the private need, nameless
        sent = next(s for s in h.transport.sent if s.body == digest)
        assert sent.content["msgtype"] == "m.notice"
        assert "<h3>" in sent.content["formatted_body"]
        assert sent.txn_id  # keyed: digest:<room>:<week>
        await h.advance(timedelta(days=1))
        assert len(digests(h, room)) == 1


async def test_a_restart_around_the_time_posts_it_exactly_once(tmp_path: Path) -> None:
    async with BotHarness.create(tmp_path, limits=NO_LIMITS, plugins=QUARTERLY) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "hello")
        # Claimed and promised, and the process dies before the homeserver has it (every
        # send fails until the restart).
        h.transport.fail_sends = 10**6
        await h.advance(TO_SUNDAY_DIGEST + timedelta(minutes=1))
        assert digests(h, room) == []
        assert await h.db.fetchval("SELECT count(*) FROM digest_posts WHERE event_id IS NULL")
        h.transport.fail_sends = 0
        h = await h.restart()
        await h.say(room, ANN, "back")  # the catch-up keeps what was promised
        (digest,) = digests(h, room)
        sent = next(s for s in h.transport.sent if s.body == digest)
        assert await h.db.fetchval("SELECT event_id FROM digest_posts") == sent.event_id
        await h.advance(timedelta(minutes=30))
        assert len(digests(h, room)) == 1
        await h.close()


async def test_a_homeserver_away_past_the_next_digest_gives_the_old_one_up(
    tmp_path: Path, caplog
) -> None:
    """A digest promised while the homeserver is away waits in the outbox; once the next
    week's is due, the old one is no news: given up, never posted a week late."""
    async with BotHarness.create(tmp_path, limits=NO_LIMITS, plugins=QUARTERLY) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "hello")
        h.transport.fail_sends = 10**6
        await h.advance(TO_SUNDAY_DIGEST + timedelta(minutes=3))  # tried each minute
        assert digests(h, room) == []
        # The bot goes down too, and comes back with the homeserver after the next Sunday.
        await h.bot.stop()
        h.clock.advance(timedelta(days=7))
        h.transport.fail_sends = 0
        h = await h.restart()
        with caplog.at_level(logging.WARNING):
            await h.say(room, ANN, "back")
        assert "gave up effect digest.digest" in caplog.text
        (digest,) = digests(h, room)  # this week's, once (late); last week's never
        assert "Sun 29 Nov – Sun 6 Dec" in digest, digest
        weeks = await h.db.fetchall("SELECT week, event_id FROM digest_posts ORDER BY week")
        assert [bool(event) for _, event in weeks] == [False, True]  # given up, then posted
        await h.close()


async def test_a_digest_missed_while_down_comes_late_once_unless_the_next_is_due(
    tmp_path: Path,
) -> None:
    async with BotHarness.create(tmp_path, limits=NO_LIMITS, plugins=QUARTERLY) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "hello")
        await h.bot.stop()
        h.clock.advance(TO_SUNDAY_DIGEST + timedelta(hours=3))  # down over Sunday 18:00
        h = await h.restart()
        await h.say(room, ANN, "back")
        (late,) = digests(h, room)
        assert "late" in late
        # Down for more than the next week: only the latest one comes.
        await h.bot.stop()
        h.clock.advance(timedelta(days=15))
        h = await h.restart()
        await h.say(room, ANN, "back again")
        assert len(digests(h, room)) == 2
        await h.close()


async def test_preview_usage_and_settings(tmp_path: Path) -> None:
    async with BotHarness.create(tmp_path, limits=NO_LIMITS, plugins=QUARTERLY) as h:
        room = h.room(members=[ANN, BOB, CAT])
        ask = await h.say(room, BOB, "!digest preview")
        preview = h.transport.sent[-1]
        assert preview.body.startswith("(Preview")
        assert preview.content["m.relates_to"]["rel_type"] == "m.thread"
        assert preview.content["m.relates_to"]["event_id"] == ask.event_id
        await h.say(room, BOB, "!digest bogus")
        assert "I don't know !digest bogus. Try !digest preview" in h.last_text(room)
        await h.say(room, BOB, "!digest now")
        assert "only" in h.last_text(room) and "moderator" in h.last_text(room)
        await h.say(room, MODERATOR, "!config digest.day funday")
        assert "day of the week" in h.last_text(room)
        await h.say(room, MODERATOR, "!config digest.time 25:00")
        assert "18:00" in h.last_text(room)
        await h.say(room, MODERATOR, "!config digest.day wed")
        await h.say(room, MODERATOR, "!config digest.time 9:30")
        await h.say(room, MODERATOR, "!config digest.empty_week nothing")
        await h.say(room, ANN, "!digest")
        assert "Wed 25 Nov 09:30" in h.last_text(room)
        await h.advance(timedelta(days=3))  # this week had the commands: 9 messages
        assert "9 messages" in digests(h, room)[-1]
        await h.advance(timedelta(days=7))  # a quiet week: empty_week nothing posts nothing
        assert len(digests(h, room)) == 2


async def test_a_preview_right_after_a_poll_and_an_offer_shows_them(tmp_path: Path) -> None:
    # Plugins keep times to the whole second: a preview in the same second as the poll (the
    # clock here does not move between commands) once ended its window before them.
    async with BotHarness.create(tmp_path, limits=NO_LIMITS, plugins=QUARTERLY) as h:
        room = h.room(members=[ANN, BOB, CAT])
        h.clock.advance(timedelta(milliseconds=400))
        await h.say(room, ANN, "!poll Which mural? | Birds | Bikes")
        await h.say(room, CAT, "!offer I have a ladder to lend | ongoing")
        await h.say(room, BOB, "!digest preview")
        preview = h.last_text(room)
        assert "P-1 Which mural?" in preview and "New offers" in preview, preview
        assert "ladder" in preview
        await h.say(room, MODERATOR, "!digest now")
        posted = digests(h, room)[-1]
        assert "P-1 Which mural?" in posted and "ladder" in posted, posted


async def test_an_overridden_template_is_used_and_a_broken_one_reported(
    tmp_path: Path, caplog
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "quiet.txt").write_text("Quiet in {{ room_name or 'here' }}, see you next week.")
    async with BotHarness.create(
        tmp_path,
        limits=NO_LIMITS,
        plugins={"digest": {**QUARTERLY["digest"], "template_dir": str(mine)}},
    ) as h:
        room = h.room(members=[ANN, BOB, CAT])
        # A quiet week: nothing said (a "!digest now" would be the week's one message).
        await h.bot.handle_batch([])
        await h.advance(TO_SUNDAY_DIGEST + timedelta(minutes=1))
        assert h.last_text(room) == "Quiet in here, see you next week."
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "digest.txt").write_text("{{ sections | nosuchfilter }}")
    (broken / "quiet.html").write_text("<script>alert(1)</script>")
    (broken / "quiet.txt").write_text("quiet")
    caplog.set_level(logging.ERROR)
    async with BotHarness.create(
        tmp_path / "b",
        limits=NO_LIMITS,
        plugins={"digest": {**QUARTERLY["digest"], "template_dir": str(broken)}},
    ) as h:
        room = h.room(members=[ANN, BOB, CAT])
        before = len(h.transport.sent)
        await h.say(room, MODERATOR, "!digest now")
        reply = h.last_text(room)
        assert reply.startswith("The digest template is broken, so I posted nothing")
        assert "digest.txt" in reply and "nosuchfilter" in reply
        assert len(h.transport.sent) == before + 1  # only the explanation
        assert any("digest.txt" in r.getMessage() and r.levelname == "ERROR"
                   for r in caplog.records)  # fmt: skip


async def test_a_broken_html_template_posts_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "quiet.html").write_text("<script>alert(1)</script>")
    (broken / "digest.html").write_text("<script>alert(1)</script>")
    async with BotHarness.create(
        tmp_path / "b",
        limits=NO_LIMITS,
        plugins={"digest": {**QUARTERLY["digest"], "template_dir": str(broken)}},
    ) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, MODERATOR, "!digest now")
        assert "<script> is not a tag Matrix clients show" in h.last_text(room)
        await h.advance(TO_SUNDAY_DIGEST + timedelta(minutes=1))
        assert not digests(h, room)


async def test_a_personal_digest_reaches_only_the_subscriber_by_dm(tmp_path: Path) -> None:
    async with BotHarness.create(tmp_path, limits=NO_LIMITS, plugins=QUARTERLY) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "!meet Litter pick | every week on saturday 10:00")
        await h.advance(TO_SUNDAY_DIGEST - timedelta(days=1))
        await h.say(room, BOB, "!rsvp M-1 going")
        await h.say(room, CAT, "!rsvp M-1 going")
        await h.say(room, BOB, "!digest subscribe")
        assert "Subscribed" in h.last_text(room)
        await h.say(room, BOB, "!digest subscribe")
        assert "already subscribed" in h.last_text(room)
        await h.say(room, ANN, "!poll Which mural? | Birds | Bikes")
        await h.advance(timedelta(days=1, minutes=1))
        dm = await h.transport.direct_room(BOB)
        personal = [s for s in h.transport.sent if s.body.startswith("📬")]
        assert len(personal) == 1 and personal[0].room_id == dm
        assert "Litter pick" in personal[0].body
        await h.say(room, BOB, "!digest unsubscribe")
        await h.advance(timedelta(days=7))
        assert len([s for s in h.transport.sent if s.body.startswith("📬")]) == 1


async def test_a_space_digest_covers_the_public_rooms_of_the_space(tmp_path: Path) -> None:
    async with BotHarness.create(tmp_path, limits=NO_LIMITS, plugins=QUARTERLY) as h:
        room, other, secret = (h.room(members=[ANN, BOB, CAT]) for _ in range(3))
        space = h.room(members=[ANN])
        t = h.transport
        t.rooms[space].create["content"]["type"] = "m.space"
        for child in (room, other, secret):
            t.rooms[space].state[("m.space.child", child)] = {"via": ["test"]}
        t.rooms[space].state[("m.room.name", "")] = {"name": "Elm Road"}
        t.rooms[other].join_rule = "public"
        t.rooms[other].state[("m.room.name", "")] = {"name": "Elm Road <chat>"}
        await h.say(other, ANN, "!poll Bins on Tuesday? | Yes | No")
        await h.say(secret, ANN, "!poll Private matter? | Yes | No")
        await h.advance(timedelta(minutes=1))
        await h.say(room, BOB, "!digest space")
        assert "only" in h.last_text(room)
        await h.say(room, MODERATOR, "!digest space")
        sent = t.sent[-1]
        assert sent.body.startswith("🗺️ This week across Elm Road")
        assert "Bins on Tuesday?" in sent.body and "Private matter?" not in sent.body
        assert "1 room of the space is not public and is left out" in sent.body
        assert "Elm Road &lt;chat&gt;" in sent.content["formatted_body"]
        assert "Elm Road <chat>" in sent.body
        alone = h.room()
        await h.say(alone, MODERATOR, "!digest space")
        assert "isn't in a space I'm in" in h.last_text(alone)


async def test_plain_messages_are_counted_without_a_core_handled_row(tmp_path: Path) -> None:
    async with BotHarness.create(tmp_path, limits=NO_LIMITS, plugins=QUARTERLY) as h:
        room = h.room(members=[ANN, BOB, CAT])
        for n in range(5):
            await h.say(room, ANN, f"message {n}")
        assert await h.db.fetchval("SELECT count(*) FROM core_handled") == 0
        await h.advance(timedelta(seconds=6))  # the flush
        assert await h.db.fetchval("SELECT SUM(messages) FROM digest_activity") == 5


def test_slots_follow_the_wall_clock_across_dst() -> None:
    before = latest_slot(6, 18, 0, LONDON, datetime(2026, 10, 24, 12, tzinfo=UTC))
    after = latest_slot(6, 18, 0, LONDON, datetime(2026, 10, 26, 12, tzinfo=UTC))
    assert before.astimezone(LONDON).hour == after.astimezone(LONDON).hour == 18
    assert after - before == timedelta(days=7, hours=1)
    assert week_key(after, LONDON) == "2026-W43"


def test_a_digest_too_big_for_one_message_still_goes_out_in_one() -> None:
    """Homeservers refuse events over 64 KiB: a very busy week loses its HTML, then its tail,
    never the post."""
    small = Rendered("📰 A quiet week", "<p>📰 A quiet week</p>")
    assert fit_one_message(small, "!") == small
    line = "• P-1 Which mural? https://matrix.to/#/!room:test/$event " + "é" * 40
    text = "\n".join(f"{n}. {line}" for n in range(100))
    text_only = fit_one_message(Rendered(text, "<ul>" + "<li>x</li>" * 6000 + "</ul>"), "!")
    assert text_only.html is None and text_only.text == text
    huge = "\n".join(f"{n}. {line}" for n in range(3000))
    cut = fit_one_message(Rendered(huge, None), "!")
    assert cut.html is None and cut.text.startswith("0. • P-1")
    assert len(json.dumps({"body": cut.text})) <= MAX_MESSAGE_JSON
    kept = cut.text.splitlines()
    assert (
        kept[-1].startswith(f"… and {3000 - (len(kept) - 1)} more lines") and "!polls" in kept[-1]
    )


async def test_a_preview_in_a_dm_is_of_your_personal_digest(tmp_path: Path) -> None:
    async with BotHarness.create(tmp_path, limits=NO_LIMITS, plugins=QUARTERLY) as h:
        room = h.room(members=[ANN, BOB, CAT])
        dm = await h.transport.direct_room(BOB)
        await h.say(dm, BOB, "!digest preview")
        assert h.last_text(dm).startswith("Your personal digest would be empty now")
        await h.say(room, ANN, "!need help moving a sofa on saturday | this week")
        await h.say(room, BOB, "!can N-1")
        await h.say(dm, BOB, "!digest preview")
        preview = h.last_text(dm)
        assert preview.startswith("📬") and "sofa" in preview, preview
        assert "messages" not in preview  # not the DM room's own digest


async def test_digest_now_twice_posts_one_digest(tmp_path: Path) -> None:
    async with BotHarness.create(tmp_path, limits=NO_LIMITS, plugins=QUARTERLY) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "!poll Which mural? | Birds | Bikes")
        await h.say(room, MODERATOR, "!digest now")
        assert len(digests(h, room)) == 1
        h.clock.advance(timedelta(minutes=5))
        await h.say(room, MODERATOR, "!digest now")
        assert len(digests(h, room)) == 1
        again = h.last_text(room)
        assert again.startswith("I posted this room's digest 5 minutes ago"), again
        assert "!digest preview" in again
        h.clock.advance(timedelta(hours=1))
        await h.say(room, MODERATOR, "!digest now")
        assert len(digests(h, room)) == 2
