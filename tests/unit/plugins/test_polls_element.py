"""Where Element would show a poll differently from the bot, the results say so (issue 20 §2)."""

from __future__ import annotations

from tests.unit.plugins.polls_support import ANN, BOB, END, polls_harness, sent_of, start_event, tap


async def test_the_same_answer_twice_counts_once_and_the_results_say_why(tmp_path):
    """Element (matrix-events-sdk) counts ``["1", "1"]`` as two votes for option 1; one person
    is one vote for an option here, and the results explain the difference."""
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Which stalls? | Cakes | Books | Plants | up to two")
        start = start_event(h)
        answers = [a["id"] for a in start.content["org.matrix.msc3381.poll.start"]["answers"]]
        await tap(h, room, ANN, start.event_id, answers[0], answers[0])
        await tap(h, room, BOB, start.event_id, answers[0], answers[1])
        await h.say(room, ANN, "!poll close P-1")
        results = h.last_text(room)
        assert "1. Cakes: ██████████ 2 (100%)" in results
        assert "2. Books: █████░░░░░ 1 (50%)" in results
        assert "1 vote named the same option twice: counted once here" in results
        assert "Element's own count shows it twice" in results
        # The end event carries the bot's count (MSC3381 m.poll.results), as the results say.
        end = sent_of(h, END)[-1]
        assert end.content["m.poll.results"] == {answers[0]: 2, answers[1]: 1, answers[2]: 0}


async def test_a_plain_vote_has_no_such_note(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Which day? | Saturday | Sunday")
        start = start_event(h)
        answers = [a["id"] for a in start.content["org.matrix.msc3381.poll.start"]["answers"]]
        await tap(h, room, BOB, start.event_id, answers[1])
        await h.say(room, ANN, "!poll close P-1")
        assert "named the same option twice" not in h.last_text(room)
