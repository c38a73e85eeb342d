"""Polls belong to their room and to their deadline: votes, ends and redactions from other
rooms do nothing; votes count by when they were sent, even across downtime; replays repeat."""

from __future__ import annotations

from datetime import timedelta

from civicbot.scheduling.clock import ms
from civicbot.testing.harness import MODERATOR
from tests.unit.plugins.polls_support import (
    ANN,
    BOB,
    CAT,
    DAN,
    END,
    dm_room,
    polls_harness,
    restart,
    secret_file,
    sent_of,
    start_event,
    tap,
)

EVE = "@eve:test"


def end_of(start_id: str) -> dict:
    return {"m.relates_to": {"rel_type": "m.reference", "event_id": start_id}, END: {}}


async def poll_state(h) -> str:
    return await h.db.fetchval("SELECT state FROM polls_polls WHERE id = 1")


async def poll_and_anns_room(h) -> tuple[str, str, str]:
    """A poll in a room where Ann has power 0, and Ann's own room (where she may redact), which
    Eve, not in the poll's room, has joined. Bob has voted 1. Returns (room, own, start id)."""
    room = h.room(members=[ANN, BOB])
    await h.say(room, MODERATOR, "!poll Bins? | Monday | Tuesday")
    start = start_event(h).event_id
    own = "!anns-room:test"
    h.transport.add_room(own, [ANN, EVE], power_levels={"users": {ANN: 100}}, creator=ANN)
    return room, own, start


async def test_votes_and_redactions_from_another_room_change_nothing(tmp_path):
    async with polls_harness(tmp_path) as h:
        room, own, start = await poll_and_anns_room(h)
        bobs = await tap(h, room, BOB, start, "1")
        await tap(h, own, EVE, start, "2")  # the start event id quoted from elsewhere
        await h.send(own, ANN, "m.room.redaction", {"redacts": bobs.event_id})
        await h.say(room, BOB, "!poll show P-1")
        shown = h.last_text(room)
        assert "1. Monday: ██████████ 1 (100%)" in shown
        assert "1 person has voted so far." in shown


async def test_an_end_from_another_room_does_not_close_the_poll(tmp_path):
    async with polls_harness(tmp_path) as h:
        room, own, start = await poll_and_anns_room(h)
        await h.send(own, ANN, END, end_of(start))  # she may redact there, not in the poll's room
        assert await poll_state(h) == "open"
        assert not any("Results" in t for t in h.texts(room))
        await h.send(room, MODERATOR, END, end_of(start))
        assert await poll_state(h) == "closed"


async def test_a_vote_typed_in_a_third_room_is_refused_politely(tmp_path):
    async with polls_harness(tmp_path) as h:
        room, own, _ = await poll_and_anns_room(h)
        # The members of a third room would see the vote: it is not counted there.
        await h.say(own, ANN, "!vote P-1 2")
        assert h.last_text(own).startswith(
            "P-1 is a poll in another room, so I haven't counted that vote here. Vote in the "
            "poll's room, or send !vote P-1 <number> to me in a direct message."
        )
        await h.say(own, ANN, "!rank P-1 2")
        assert "P-1 is a poll in another room" in h.last_text(own)
        dm = dm_room(h, ANN)
        await h.say(dm, ANN, "!vote P-1 2")  # a direct message is private: that counts
        assert "✅ Counted: your vote in P-1 is 2. Tuesday" in h.last_text(dm)
        await h.say(room, MODERATOR, "!poll close P-1")
        results = h.last_text(room)
        assert "Winner: Tuesday." in results
        assert "Turnout: 1 person voted of 3 members (33%)." in results


async def test_an_overdue_poll_closes_once_the_backlog_is_read_and_counts_by_send_time(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT, DAN])
        await h.say(room, ANN, "!poll Bins? | Monday | Tuesday | closes in 1 hour")
        opened = h.clock.now()
        await h.bot.stop()
        h.clock.advance(timedelta(hours=2))  # the bot is down across the deadline
        h = await restart(h)
        await h.advance(timedelta(minutes=5))
        assert not sent_of(h, END)  # no timer closes it: it waits for the backlog

        def typed(who: str, text: str, sent_at) -> object:
            content = {"msgtype": "m.text", "body": text}
            return h.transport.make_event(room, who, "m.room.message", content, ts=ms(sent_at))

        backlog = [
            typed(BOB, "!vote P-1 1", opened + timedelta(minutes=50)),  # before the deadline
            typed(CAT, "!vote P-1 2", opened + timedelta(minutes=90)),  # after it
        ]
        await h.bot.handle_batch(backlog)
        texts = h.texts(room)
        assert "✅ Counted: your vote in P-1 is 1. Monday." in texts
        assert (
            "Voting in P-1 closed at Mon 23 Nov 10:00 Europe/London, so that vote was not counted."
        ) in texts
        results = h.last_text(room)
        assert results.startswith("📊 Results of P-1: Bins?\nWinner: Monday.")
        assert "Turnout: 1 person voted of 5 members (20%)." in results

        # Sent before the deadline, read only after the results were out: said plainly.
        late = typed(DAN, "!vote P-1 2", opened + timedelta(minutes=55))
        await h.bot.handle_batch([late])
        assert "You sent it in time, but it reached me only after the results had been counted" in (
            h.last_text(room)
        )
        await h.advance(timedelta(minutes=1))
        await h.say(room, DAN, "!vote P-1 2")  # sent after the close
        assert h.last_text(room) == (
            "Voting in P-1 has closed, so that vote was not counted. "
            "!poll show P-1 shows the result."
        )
        await h.say(room, DAN, "!poll show P-1")
        assert "Turnout: 1 person voted" in h.last_text(room)


async def test_a_deadline_passing_before_the_backlog_is_read_waits_for_it(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Bins? | Monday | Tuesday | closes in 1 hour")
        opened = h.clock.now()
        await h.bot.stop()
        h.clock.advance(timedelta(minutes=59))
        h = await restart(h)
        await h.advance(timedelta(minutes=2))  # the deadline passes, the first sync still runs
        assert not sent_of(h, END)
        content = {"msgtype": "m.text", "body": "!vote P-1 2"}
        sent_at = ms(opened + timedelta(minutes=58))
        vote = h.transport.make_event(room, BOB, "m.room.message", content, ts=sent_at)
        await h.bot.handle_batch([vote])
        assert "Winner: Tuesday." in h.last_text(room)


async def test_a_replayed_secret_ballot_is_answered_as_counted_again(tmp_path):
    async with polls_harness(tmp_path, plugins={"polls": {"min_secret_voters": 1}}) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Spend the grant on? | Benches | Planters | secret")
        dm = dm_room(h, BOB)
        vote = await h.say(dm, BOB, "!vote P-1 2")
        first = h.transport.sent[-1]
        assert "Your secret vote in P-1 has been counted" in first.body
        # A crash before the core marked the event handled: it comes again after the restart.
        await h.db.execute("DELETE FROM core_handled")
        h = await restart(h)
        attempts = []
        send_event = h.transport.send_event

        async def recording(room_id, event_type, content, txn_id):
            attempts.append((txn_id, content.get("body")))
            return await send_event(room_id, event_type, content, txn_id)

        h.transport.send_event = recording
        await h.bot.handle_batch([vote])
        # The ballot waited in memory for its batch (see civicbot/storage/private_store.py), so
        # the stop lost it; the replayed vote counts it, answered as before, and Bob, having
        # voted again, is not asked to.
        assert attempts == [(first.txn_id, first.body)]
        await h.say(dm, BOB, "!vote P-1 1")  # a second ballot is still refused
        assert "You have already voted in P-1" in h.last_text(dm)
        await h.say(room, ANN, "!poll close P-1")
        assert "2. Planters: ██████████ 1 (100%)" in h.last_text(room)
        secret = secret_file(h)
        assert secret.execute("SELECT COUNT(*) FROM private_contributions").fetchone()[0] == 1
        secret.close()
        # Even replayed after the close, Bob's ballot is the one that was counted.
        attempts.clear()
        await h.db.execute("DELETE FROM core_handled")
        h = await restart(h)
        await h.bot.handle_batch([vote])
        assert attempts == [(first.txn_id, first.body)]
        await h.advance(timedelta(minutes=1))
        await h.say(dm_room(h, ANN), ANN, "!vote P-1 1")
        assert h.last_text(dm_room(h, ANN)).startswith("Voting in P-1 has closed")


async def test_a_replayed_poll_close_says_nothing_new(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Bins? | Monday | Tuesday")
        await h.say(room, ANN, "!poll Paint? | red | blue")
        closing = await h.say(room, ANN, "!poll close P-1")
        elsewhere = await h.say(dm_room(h, ANN), ANN, "!poll close P-2")
        assert "Closed P-2; the results are posted in its room." in h.texts()[-2:]
        sent = len(h.transport.sent)
        await h.db.execute("DELETE FROM core_handled")
        h = await restart(h)
        await h.bot.handle_batch([closing, elsewhere])
        assert len(h.transport.sent) == sent  # the same sends again, deduplicated: nothing new
        await h.say(room, BOB, "!poll close P-1")  # someone else, now: told it has closed
        assert "P-1 has already closed" in h.last_text(room)
        await h.say(room, ANN, "!poll close P-1")
        assert "P-1 has already closed" in h.last_text(room)
