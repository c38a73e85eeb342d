"""Promised effects (civicbot.core.effects) are kept exactly once: after a crash at each step,
through failed sends, and a room that was made but not recorded is found, not made again."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from civicbot_plugins.mutual_aid.plugin import MutualAidPlugin

from civicbot.core.effects import Composed, DirectMessage, NewRoom, RoomNotice, Say
from civicbot.core.events import EventKind
from civicbot.core.loader import discover
from civicbot.testing.harness import BotHarness
from civicbot.transport import TransportError

ANN, BOB, CAT = "@ann:test", "@bob:test", "@cat:test"


class Crash(BaseException):
    """Stands for the process dying at that instant: nothing after it runs."""


def plugins():
    return {**discover(builtin_only=True), "mutual_aid": MutualAidPlugin}


async def caught_up(h: BotHarness) -> None:
    """The first batch after a start: promises left unkept are kept then."""
    await h.bot.handle_batch([])


async def test_promise_made_before_a_crash_is_kept_once_after_restart(tmp_path):
    async with BotHarness.create(tmp_path, {}) as h:
        room = h.room()
        await h.bot.effects.promise("core", "note:1", Say(room, "Kept once"))
        # The process dies here: nothing was sent. The next start keeps the promise.
        fresh = await h.restart()
        await caught_up(fresh)
        assert fresh.texts(room) == ["Kept once"]
        again = await fresh.restart()
        await caught_up(again)
        assert await again.bot.effects.carry_out("core", "note:1") is not None
        assert again.texts(room) == ["Kept once"]
        await again.bot.stop()


async def test_sent_but_not_recorded_is_not_seen_twice(tmp_path):
    async with BotHarness.create(tmp_path, {}) as h:
        room = h.room()
        await h.bot.effects.promise("core", "note:2", Say(room, "Once"))
        assert await h.bot.effects.carry_out("core", "note:2")
        # The crash falls between the send and the record: the record is undone.
        await h.db.execute("UPDATE core_effects SET done_at = NULL")
        await h.bot.effects.carry_out_pending()
        assert h.texts(room) == ["Once"]  # the same transaction id: the homeserver drops it


async def test_failed_send_stays_promised_and_is_retried_every_minute(tmp_path):
    async with BotHarness.create(tmp_path, {}) as h:
        await caught_up(h)
        h.transport.fail_sends = 10**6  # the homeserver is away for a long while
        promised = await h.bot.effects.promise("core", "dm:1", DirectMessage(ANN, "Hello Ann"))
        assert promised
        assert await h.bot.effects.carry_out("core", "dm:1") is None
        await h.advance(timedelta(minutes=3))
        dm = await h.transport.direct_room(ANN)
        assert h.texts(dm) == []
        h.transport.fail_sends = 0
        await h.advance(timedelta(minutes=1))
        assert h.texts(dm) == ["Hello Ann"]
        await h.advance(timedelta(minutes=5))
        assert h.texts(dm) == ["Hello Ann"]
        # A kept promise keeps no payload: it named a person.
        assert await h.db.fetchval("SELECT payload FROM core_effects") == "{}"


async def test_room_made_but_not_recorded_is_found_by_its_intent_not_made_twice(tmp_path):
    async with BotHarness.create(tmp_path, {}) as h:
        effect = NewRoom("N-1: mutual aid", (ANN, BOB), (RoomNotice("Meet each other"),))
        await h.bot.effects.promise("core", "room:1", effect)
        # A first try made the room and died before recording it.
        await h.db.execute("UPDATE core_effects SET tries = 1")
        made = await h.transport.create_private_room(
            "N-1: mutual aid", [ANN, BOB], intent="core:room:1"
        )
        assert await h.bot.effects.carry_out("core", "room:1") == made
        assert len(h.transport.created_rooms) == 1
        assert h.texts(made) == ["Meet each other"]


async def test_refused_for_good_is_dropped_not_retried_forever(tmp_path, monkeypatch):
    async with BotHarness.create(tmp_path, {}) as h:
        room = h.room()

        async def forbidden(*args, **kwargs):
            raise TransportError("not in the room", "M_FORBIDDEN")

        monkeypatch.setattr(h.transport, "send_event", forbidden)
        await h.bot.effects.promise("core", "note:3", Say(room, "Nobody hears"))
        assert await h.bot.effects.carry_out("core", "note:3") is None
        assert await h.db.fetchval("SELECT count(*) FROM core_effects") == 0


async def test_welcome_is_promised_before_the_join(tmp_path):
    async with BotHarness.create(tmp_path, {}) as h:
        room = h.room()
        invite = h.transport.make_event(
            room, "@mod:test", "m.room.member", {"membership": "invite"}, state_key="@civicbot:test"
        )
        invite = replace(invite, kind=EventKind.INVITE, event_id="")

        async def join_then_die(room_id):
            h.transport.joined.add(room_id)
            raise Crash  # stands for the process dying right after the join

        real_join = h.transport.join
        h.transport.join = join_then_die  # type: ignore[method-assign]
        try:
            await h.bot.handle_batch([invite])
        except Crash:
            pass
        h.transport.join = real_join  # type: ignore[method-assign]
        fresh = await h.restart()
        await caught_up(fresh)
        assert len([t for t in fresh.texts(room) if t.startswith("Hello! I'm civicbot")]) == 1
        await fresh.bot.stop()


async def test_expiry_dm_survives_a_homeserver_away_past_the_retry_deadline(tmp_path):
    async with BotHarness.create(
        tmp_path, plugins(), plugins={"mutual_aid": {"expiry_days": 3}}
    ) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!need someone to walk my dog")
        dm = await h.transport.direct_room(ANN)
        h.transport.fail_sends = 10**6  # every send gives up, as after the 600 s deadline
        await h.advance(timedelta(days=3, hours=1))
        assert not [t for t in h.texts(dm) if "has expired" in t]
        h.transport.fail_sends = 0
        await h.advance(timedelta(minutes=1))
        expired = [t for t in h.texts(dm) if "has expired" in t]
        reminded = [t for t in h.texts(dm) if "expires on" in t]
        assert len(expired) == 1 and len(reminded) == 1
        await h.advance(timedelta(hours=2))
        assert len([t for t in h.texts(dm) if "has expired" in t]) == 1


async def test_intro_room_promise_survives_a_crash_after_accepting(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "!needs")  # the bot learns Ann's room uses mutual aid
        ann_dm = await h.transport.direct_room(ANN)
        await h.say(ann_dm, ANN, "!need help moving a sofa | this week | room: 1")
        await h.say(room, CAT, "!can N-1")
        rooms_before = len(h.transport.created_rooms)

        async def create_then_die(name, invite, intent=""):
            await real_create(name, invite, intent)
            raise Crash  # the process dies after the room is made

        real_create = h.transport.create_private_room
        h.transport.create_private_room = create_then_die  # type: ignore[method-assign]
        try:
            await h.say(ann_dm, ANN, "!accept N-1")
        except Crash:
            pass
        h.transport.create_private_room = real_create  # type: ignore[method-assign]
        fresh = await h.restart()
        await caught_up(fresh)
        made = fresh.transport.created_rooms[rooms_before:]
        assert len(made) == 1
        intro_room = made[0][0]
        assert len(fresh.texts(intro_room)) == 1 and "!done N-1" in fresh.texts(intro_room)[0]
        match = await fresh.db.fetchval("SELECT intro_room_id FROM mutual_aid_matches")
        assert match == intro_room
        await fresh.bot.stop()


async def test_room_upgrade_moves_open_items_once_and_links_back(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        old = h.room(members=[ANN, BOB])
        await h.say(old, ANN, "!need a hand with the shopping")
        new = h.room(members=[ANN, BOB])
        tombstone = h.transport.make_event(
            old,
            "@mod:test",
            "m.room.tombstone",
            {"body": "upgraded", "replacement_room": new},
            state_key="",
        )
        await h.bot.handle_batch([tombstone])
        await h.bot.handle_batch([tombstone])  # seen again (a replay): nothing more
        notes = [t for t in h.texts(new) if t.startswith("This room replaces an older one")]
        assert len(notes) == 1 and old in notes[0]
        await h.say(new, BOB, "!needs")
        assert "N-1" in h.last_text(new)
        await h.say(old, BOB, "!needs")
        assert "N-1" not in h.last_text(old)


async def test_forgetting_a_person_drops_what_was_still_promised_to_them(tmp_path):
    async with BotHarness.create(tmp_path, {}) as h:
        await h.bot.effects.promise("core", "dm:ann", DirectMessage(ANN, "For Ann"))
        await h.bot.effects.promise("core", "dm:annie", DirectMessage(ANN + ".org", "Not Ann"))
        assert await h.bot.effects.forget(ANN) == 1
        assert await h.bot.effects.is_pending("core", "dm:annie")
        assert not await h.bot.effects.is_pending("core", "dm:ann")


async def test_an_effect_past_its_moment_is_given_up_not_carried_out(tmp_path):
    """A reminder or a week's digest that could not go out before its moment passed (the
    homeserver away, the bot down) is no news any more: given up, and its owner hears so."""
    async with BotHarness.create(tmp_path, {}) as h:
        await caught_up(h)
        room = h.room()
        heard: list[tuple[str, str]] = []

        async def done(key: str, result: str) -> None:
            heard.append((key, result))

        h.bot.effects.on_done("core", done)
        h.transport.fail_sends = 10**6
        moment = h.clock.now() + timedelta(minutes=30)
        await h.bot.effects.promise("core", "remind:1", Say(room, "Starts soon"), expires=moment)
        await h.bot.effects.promise("core", "remind:2", Say(room, "Starts later"))
        assert await h.bot.effects.carry_out("core", "remind:1") is None  # pending: retried
        await h.advance(timedelta(minutes=29))
        assert heard == [] and h.texts(room) == []  # still tried every minute
        await h.advance(timedelta(minutes=2))  # the homeserver is back only after the moment
        h.transport.fail_sends = 0
        await h.advance(timedelta(minutes=1))
        assert h.texts(room) == ["Starts later"]  # the one with no moment still goes
        assert ("remind:1", "") in heard
        # Given up is done: promising it again (a replay) sends nothing either.
        assert not await h.bot.effects.promise("core", "remind:1", Say(room, "Starts soon"))
        assert await h.bot.effects.carry_out("core", "remind:1") == ""
        assert h.texts(room) == ["Starts later"]


async def test_a_composed_effect_is_made_when_carried_out_and_seen_once(tmp_path):
    """What a composed effect says is made when it goes out (the week so far); a retry after
    a crash may make it again, differently, and the room still sees one message."""
    async with BotHarness.create(tmp_path, {}) as h:
        await caught_up(h)
        room = h.room()
        made: list[dict] = []
        count = {"n": 0}

        async def compose(args: dict):
            made.append(args)
            count["n"] += 1
            if args.get("quiet"):
                return None  # nothing to say this time
            return Say(args["room"], f"Digest, version {count['n']}")

        await h.bot.effects.promise("core", "digest:1", Composed("digest", {"room": room}))
        # Registered after the promise (as at a start): it waits for its composer.
        assert await h.bot.effects.carry_out("core", "digest:1") is None
        h.bot.effects.composer("core", "digest", compose)
        # The process dies between the send and its record.
        record = h.bot.effects._done

        async def crash(full: str, result: str) -> None:
            raise Crash

        h.bot.effects._done = crash  # type: ignore[method-assign]
        with pytest.raises(Crash):
            await h.bot.effects.carry_out("core", "digest:1")
        h.bot.effects._done = record  # type: ignore[method-assign]
        assert h.texts(room) == ["Digest, version 1"]
        # Made again at the retry, differently, and sent under the same id: seen once.
        await h.bot.effects.carry_out_pending()
        assert count["n"] == 2
        assert h.texts(room) == ["Digest, version 1"]
        assert await h.bot.effects.carry_out("core", "digest:1")
        assert count["n"] == 2  # done: not made again
        # Nothing to say: done with no message.
        await h.bot.effects.promise("core", "digest:2", Composed("digest", {"quiet": True}))
        assert await h.bot.effects.carry_out("core", "digest:2") == ""
        assert h.texts(room) == ["Digest, version 1"]


async def test_a_composer_that_fails_leaves_its_promise_to_be_tried_again(tmp_path):
    async with BotHarness.create(tmp_path, {}) as h:
        await caught_up(h)
        room = h.room()
        broken = {"yes": True}

        async def compose(args: dict):
            if broken["yes"]:
                raise ValueError("the operator's template is broken")
            return Say(room, "Fixed")

        h.bot.effects.composer("core", "digest", compose)
        await h.bot.effects.promise("core", "digest:3", Composed("digest"))
        assert await h.bot.effects.carry_out("core", "digest:3") is None
        await h.advance(timedelta(minutes=2))
        assert h.texts(room) == []
        broken["yes"] = False
        await h.advance(timedelta(minutes=1))
        assert h.texts(room) == ["Fixed"]
