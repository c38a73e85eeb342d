"""What results say (proposal outcomes, percentages of multi-choice polls), and that every time
is shown in the room's zone as it is now, whatever it was when the poll was made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from civicbot_plugins.polls import render
from civicbot_plugins.polls.models import OPEN, Poll
from civicbot_plugins.polls.parsing import parse_poll_input
from civicbot_plugins.polls.service import (
    PollKind,
    ProposalOutcome,
    decide_proposal,
)

from civicbot.testing.harness import MODERATOR
from tests.unit.plugins.polls_support import ANN, BOB, CAT, DAN, dm_room, polls_harness, tap
from tests.unit.plugins.polls_support import start_event as start_of


def test_proposal_outcomes_follow_the_stated_rule():
    assert decide_proposal({"agree": 3, "disagree": 1, "block": 1}) is ProposalOutcome.BLOCKED
    assert decide_proposal({"agree": 3, "disagree": 1}) is ProposalOutcome.AGREED
    assert decide_proposal({"agree": 1, "disagree": 1, "abstain": 5}) is ProposalOutcome.NOT_AGREED
    assert decide_proposal({"agree": 0, "abstain": 1, "disagree": 1}) is ProposalOutcome.NOT_AGREED
    assert decide_proposal({"agree": 1, "abstain": 9}) is ProposalOutcome.AGREED


async def test_a_proposal_result_says_whether_it_passed_and_by_which_rule(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "!poll Adopt the new bin rota? | proposal")
        assert "It is agreed if nobody blocks and more people agree" in h.last_text(room)
        await h.say(room, BOB, "!vote P-1 abstain")
        await h.say(room, CAT, "!vote P-1 disagree")
        await h.say(room, ANN, "!poll close P-1")
        results = h.last_text(room)
        # Today's bug: "Tied between Abstain and Disagree", which says nothing about the outcome.
        assert "Tied between" not in results
        assert "❌ Not agreed: 0 agree, 1 abstain, 1 disagree; no blocks." in results
        assert "Rule: A proposal is agreed when nobody blocks and more people agree" in results

        await h.say(room, ANN, "!poll Paint the benches? | proposal")
        await h.say(room, BOB, "!vote P-2 agree")
        await h.say(room, CAT, "!vote P-2 block the paint is toxic")
        await h.say(room, DAN, "!vote P-2 agree")
        await h.say(room, ANN, "!poll close P-2")
        results = h.last_text(room)
        assert (
            "⛔ Blocked: 1 block (listed first below). 2 agree, 0 abstain, 0 disagree." in results
        )
        assert results.index("the paint is toxic") < results.index("1. Agree:")

        await h.say(room, ANN, "!poll Plant trees? | proposal")
        await h.say(room, BOB, "!vote P-3 agree")
        await h.say(room, ANN, "!poll close P-3")
        assert "✅ Agreed: 1 agree, 0 abstain, 0 disagree; no blocks." in h.last_text(room)
        await h.say(room, BOB, "!poll show P-3")
        assert "✅ Agreed" in h.last_text(room) and "Rule: " in h.last_text(room)


async def test_multi_choice_percentages_over_100_are_explained(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Which stalls? | Cakes | Books | Plants | up to 2")
        await h.say(room, ANN, "!vote P-1 1 2")
        await h.say(room, BOB, "!vote P-1 1 3")
        await h.say(room, ANN, "!poll close P-1")
        results = h.last_text(room)
        assert "1. Cakes: ██████████ 2 (100%)" in results
        assert (
            "(Percentages are of the 2 people who voted; each could choose up to 2, so they "
            "add up to more than 100%.)" in results
        )
        html = h.transport.sent[-1].content["formatted_body"]
        assert "add up to more than 100%" in html

        # One pick each on an "up to" poll: 43% + 29% + 29% is rounding, nothing to explain.
        await h.say(room, ANN, "!poll Which stalls? | Cakes | Books | Plants | up to 2")
        for n, choice in enumerate("1112233"):
            await h.say(room, f"@voter{n}:test", f"!vote P-2 {choice}")
        await h.say(room, ANN, "!poll close P-2")
        assert "1. Cakes: ████░░░░░░ 3 (43%)" in h.last_text(room)
        assert "3. Plants: ███░░░░░░░ 2 (29%)" in h.last_text(room)
        assert "more than 100%" not in h.last_text(room)


def _poll(closes_at: datetime, now: datetime) -> Poll:
    spec = parse_poll_input("Q? | a | b")
    return Poll(
        id=1,
        room_id="!r:test",
        source_event_id="$e",
        creator=ANN,
        question=spec.question,
        kind=PollKind.SINGLE,
        max_selections=1,
        options=spec.options,
        secret=False,
        hidden=False,
        timezone="Europe/London",
        salt="s",
        created_at=now,
        closes_at=closes_at,
        state=OPEN,
    )


def test_closes_in_10_minutes_is_echoed_as_10_minutes():
    made = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    poll = _poll(made + timedelta(minutes=10), made)
    # The announcement goes out a few milliseconds after the poll was made.
    later = made + timedelta(milliseconds=40)
    assert render.closes_in(poll, later) == "in 10 minutes"
    assert render.closes_in(poll, made + timedelta(minutes=3, seconds=10)) == "in 7 minutes"


async def test_changing_the_room_zone_changes_the_times_of_every_poll(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Bins? | Monday | Tuesday | closes friday 18:00")
        assert "Fri 27 Nov 18:00 Europe/London" in h.last_text(room)
        await h.bot.room_settings.set(room, "room", "timezone", "Europe/Paris", actor=MODERATOR)
        await h.say(room, ANN, "!poll Paint? | Green | Blue | closes in 3 days")
        await h.say(room, BOB, "!poll show P-1")
        shown = h.last_text(room)
        # The instant is the same; it is shown in the zone the room has now.
        assert "Fri 27 Nov 19:00 Europe/Paris" in shown and "London" not in shown
        await h.say(room, BOB, "!polls")
        listed = h.last_text(room)
        assert "Fri 27 Nov 19:00 Europe/Paris" in listed and "Europe/London" not in listed
        await h.say(room, BOB, "!vote P-1 1")
        assert "You can change it until Fri 27 Nov 19:00 Europe/Paris." in h.last_text(room)
        await tap(h, room, BOB, start_of(h, 0).event_id, "1")
        await h.advance(timedelta(days=4, hours=10))  # the reminder, then the close
        reminder = next(t for t in h.texts(room) if t.startswith("⏰ P-1"))
        assert "Europe/Paris" in reminder
        results = next(t for t in h.texts(room) if t.startswith("📊 Results of P-1"))
        assert "Closed Fri 27 Nov 19:00 Europe/Paris." in results


async def test_in_a_direct_message_times_are_in_the_readers_zone(tmp_path):
    async with polls_harness(tmp_path) as h:
        paris = h.room(members=[ANN, BOB])
        await h.bot.room_settings.set(paris, "room", "timezone", "Europe/Paris", actor=MODERATOR)
        await h.say(paris, ANN, "!poll Bins? | Monday | Tuesday | closes friday 18:00")
        assert "Fri 27 Nov 18:00 Europe/Paris" in h.last_text(paris)
        london = h.room(members=[ANN, BOB])
        await h.say(london, ANN, "!poll Paint? | Green | Blue | closes friday 18:00")
        dm = dm_room(h, BOB)
        await h.say(dm, BOB, "!polls")
        listed = h.last_text(dm)
        # Both rooms' polls in one zone, the reader's (the bot's default until they choose).
        assert "Fri 27 Nov 17:00 Europe/London" in listed
        assert "Fri 27 Nov 18:00 Europe/London" in listed
        assert "Paris" not in listed
        await h.bot.room_settings.set(dm, "room", "timezone", "America/New_York", actor=BOB)
        await h.say(dm, BOB, "!poll show P-1")
        assert "Fri 27 Nov 12:00 America/New_York" in h.last_text(dm)
