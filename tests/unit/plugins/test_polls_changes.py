"""``!poll edit`` and ``!poll cancel``: fixing a poll nobody has voted in, or withdrawing one
without a result, and what the room's clients are sent for each."""

from __future__ import annotations

from datetime import timedelta

from civicbot.testing.harness import MODERATOR
from tests.unit.plugins.polls_support import (
    ANN,
    BOB,
    END,
    START,
    dm_room,
    polls_harness,
    restart,
    sent_of,
    start_event,
    tap,
)

REDACTION = "m.room.redaction"


async def test_the_creator_fixes_a_poll_in_place_before_anyone_votes(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Which day? | Saturday | Sunday | closes friday 18:00")
        text, start = h.transport.sent[-2:]
        await h.say(room, ANN, "!poll edit P-1 Which day for the pick? | Sat | Sun | Mon")
        text_edit, new_start, old_end, reply = h.transport.sent[-4:]
        # The announcement, replaced in place.
        assert text_edit.content["m.relates_to"] == {
            "rel_type": "m.replace",
            "event_id": text.event_id,
        }
        new_text = text_edit.content["m.new_content"]["body"]
        assert new_text.startswith(
            "📊 P-1: Which day for the pick? (edited)\n1. Sat\n2. Sun\n3. Mon"
        )
        assert "Closes Fri 27 Nov 18:00 Europe/London" in new_text  # left out: kept
        assert text_edit.body.startswith("* 📊 P-1")
        # The native poll is a new one (Element never re-reads an edited poll), and the old
        # one is ended saying why and where the new one is.
        assert new_start.type == START and "m.new_content" not in new_start.content
        answers = new_start.content[START]["answers"]
        assert [a["org.matrix.msc1767.text"] for a in answers] == ["Sat", "Sun", "Mon"]
        assert [a["id"] for a in answers] == ["e1-1", "e1-2", "e1-3"]
        assert old_end.type == END
        assert old_end.content["m.relates_to"] == {
            "rel_type": "m.reference",
            "event_id": start.event_id,
        }
        assert "P-1 was changed" in old_end.body and new_start.event_id in old_end.body
        assert reply.body.startswith("✏️ P-1 is updated. Its buttons are in a new poll")
        # Votes count for the new options, by button (new ids) or typed; the old poll is shut.
        await tap(h, room, BOB, new_start.event_id, "e1-3")
        await tap(h, room, ANN, start.event_id, "1")  # a stale client's tap on the old poll
        await h.say(room, BOB, "!poll show P-1")
        shown = h.last_text(room)
        assert "3. Mon: ██████████ 1 (100%)" in shown
        h.clock.advance(timedelta(minutes=1))  # Ann's typed vote replaces her spoiled one
        await h.say(room, ANN, "!vote P-1 1")
        assert "your vote in P-1 is 1. Sat" in h.last_text(room)
        await h.say(room, ANN, "!poll close P-1")
        assert "Tie between Sat and Mon." in h.last_text(room)


async def test_an_edit_can_change_the_closing_time_and_the_kind(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Mural? | Birds | Bikes | closes in 3 days")
        start = start_event(h)
        await h.say(
            room, ANN, "!poll edit P-1 Mural? | Birds | Bikes | Bridges | ranked | closes in 1 day"
        )
        # Ranked polls are typed-only: the buttons go.
        assert sent_of(h, REDACTION)[-1].content["redacts"] == start.event_id
        assert "It closes Tue 24 Nov 09:00 Europe/London." in h.last_text(room)
        await h.say(room, BOB, "!rank P-1 3 1")
        assert "3. Bridges, then 1. Birds" in h.last_text(room)
        await h.advance(timedelta(days=1, minutes=1))  # the new deadline, not the old one
        assert h.last_text(room).startswith("📊 Results of P-1: Mural?\nWinner: Bridges")
        assert not sent_of(h, END)  # no native poll left to end


async def test_no_edit_after_a_vote_and_only_by_the_creator(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Which day? | Saturday | Sunday")
        await h.say(room, MODERATOR, "!poll edit P-1 Which day? | Sat | Sun")
        assert "Only the person who started P-1 can edit it" in h.last_text(room)
        await tap(h, room, BOB, start_event(h).event_id, "1")
        await h.say(room, ANN, "!poll edit P-1 Which day? | Sat | Sun")
        assert "P-1 already has 1 vote, so it can't be changed any more" in h.last_text(room)
        assert "!poll cancel P-1" in h.last_text(room)
        await h.say(room, ANN, "!poll edit P-1 Which day? | only one")
        assert "already has 1 vote" in h.last_text(room)
        await h.say(room, BOB, "!poll show P-1")
        assert "1. Saturday: ██████████ 1 (100%)" in h.last_text(room)


async def test_a_bad_edit_says_what_is_wrong_and_changes_nothing(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Which day? | Saturday | Sunday")
        sent = len(h.transport.sent)
        await h.say(room, ANN, "!poll edit P-1 Which day? | Saturday")
        assert "at least two options" in h.last_text(room)
        assert len(h.transport.sent) == sent + 1  # only the reply
        await h.say(room, ANN, "!poll edit P-1")
        assert "Type !poll edit P-12 and then the whole poll" in h.last_text(room)
        await h.say(room, ANN, "!poll cancel")
        assert "Which poll? Type !poll cancel P-12" in h.last_text(room)


async def test_cancel_withdraws_the_poll_without_any_result(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Which day? | Saturday | Sunday")
        text, start = h.transport.sent[-2:]
        await tap(h, room, BOB, start.event_id, "1")
        await h.say(room, BOB, "!poll cancel P-1")
        assert "Only the person who started P-1 or a moderator can cancel it" in h.last_text(room)
        await h.say(room, ANN, "!poll cancel P-1")
        text_edit, redaction, reply = h.transport.sent[-3:]
        assert text_edit.content["m.relates_to"]["event_id"] == text.event_id
        assert "P-1 (cancelled): Which day?" in text_edit.content["m.new_content"]["body"]
        # Redacted, not ended: an end would make Element show the final counts.
        assert redaction.type == REDACTION and redaction.content["redacts"] == start.event_id
        assert not sent_of(h, END)
        assert reply.body.startswith("P-1 is cancelled.")
        assert not any("Results of P-1" in t for t in h.texts(room))
        stored = await h.db.fetchval("SELECT COUNT(*) FROM polls_responses WHERE poll_id = 1")
        assert stored == 0
        await h.say(room, BOB, "!vote P-1 2")
        assert "P-1 was cancelled, so there is nothing to vote on." in h.last_text(room)
        await h.say(room, BOB, "!poll show P-1")
        assert "P-1 (cancelled)" in h.last_text(room) and "No results" in h.last_text(room)
        await h.say(room, ANN, "!poll close P-1")
        assert "P-1 was cancelled" in h.last_text(room)
        await h.say(room, ANN, "!polls")
        assert "There are no open polls here" in h.last_text(room)
        # Its deadline passes without a result, even after a restart.
        h = await restart(h)
        await h.advance(timedelta(days=8))
        assert not any("Results of P-1" in t for t in h.texts(room))


async def test_a_moderator_may_cancel_from_a_direct_message_and_a_replay_says_it_once(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Which day? | Saturday | Sunday")
        dm = dm_room(h, MODERATOR)
        cancel = await h.say(dm, MODERATOR, "!poll cancel P-1")
        assert h.last_text(dm).startswith("P-1 is cancelled.")
        before = len(h.transport.sent)
        await h.bot.handle_batch([cancel])  # replayed after a crash before it was marked done
        assert len(h.transport.sent) == before
        await h.say(room, ANN, "!poll cancel P-1")
        assert "P-1 is already cancelled." in h.last_text(room)


async def test_a_replayed_edit_sends_nothing_twice(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Mural? | Birds | Bikes")
        edit = await h.say(room, ANN, "!poll edit P-1 Mural? | Birds | Bikes | secret")
        sent = len(h.transport.sent)
        assert sent_of(h, REDACTION)  # a secret ballot has no buttons
        await h.bot.handle_batch([edit])  # replayed after a crash before it was marked done
        assert len(h.transport.sent) == sent
        assert await h.db.fetchval("SELECT edits FROM polls_polls WHERE id = 1") == 1


async def test_forgetting_the_creator_of_a_cancelled_poll_leaves_no_stand_in(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Mural? | Birds | Bikes")
        await h.say(room, ANN, "!poll cancel P-1")
        polls = h.bot.plugins["polls"]
        await polls.forget_user(ANN)
        assert await h.db.fetchval("SELECT COUNT(*) FROM polls_forgotten") == 0
        assert await h.db.fetchval("SELECT creator FROM polls_polls WHERE id = 1") == ""
