"""The voting rules as plain functions: where a vote may be given, who may change, cancel or
close a poll and when (no bot, no database: each case is a function call)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from civicbot_plugins.polls import service
from civicbot_plugins.polls.models import CANCELLED, CLOSED, OPEN, Poll
from civicbot_plugins.polls.service import PROPOSAL_OPTIONS, Option, PollKind

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")
ANN, BOB = "@ann:test", "@bob:test"
POLL = Poll(
    id=7,
    room_id="!r:test",
    source_event_id="$e",
    creator=ANN,
    question="Q?",
    kind=PollKind.SINGLE,
    max_selections=1,
    options=[Option("1", "a"), Option("2", "b")],
    secret=False,
    hidden=False,
    timezone="Europe/Paris",
    salt="s",
    created_at=NOW,
    closes_at=NOW + timedelta(days=2),
    state=OPEN,
)
SECRET = replace(POLL, secret=True, hidden=True)


def test_where_votes_may_be_given():
    assert service.vote_place_refusal(POLL, in_poll_room=True, direct=False, prefix="!") is None
    assert service.vote_place_refusal(POLL, in_poll_room=False, direct=True, prefix="!") is None
    third_room = service.vote_place_refusal(POLL, in_poll_room=False, direct=False, prefix="!")
    assert third_room and "P-7 is a poll in another room" in third_room
    assert service.vote_place_refusal(SECRET, in_poll_room=False, direct=True, prefix="!") is None
    for in_room, direct in ((True, False), (False, False)):
        refusal = service.vote_place_refusal(SECRET, in_room, direct, "!")
        assert refusal and "please don't vote here" in refusal
    assert service.withdraw_refusal(SECRET, []) and not service.withdraw_refusal(POLL, [])


def test_a_vote_is_late_by_when_it_was_sent_and_a_cancelled_poll_takes_none():
    deadline = int(POLL.closes_at.timestamp() * 1000)
    assert service.late_vote_refusal(POLL, deadline, NOW, "!", LONDON) is None
    late = service.late_vote_refusal(POLL, deadline + 1, NOW, "!", LONDON)
    assert (
        late
        == "Voting in P-7 closed at Wed 25 Nov 09:00 Europe/London, so that vote was not counted."
    )
    cancelled = replace(POLL, state=CANCELLED)
    assert service.late_vote_refusal(cancelled, 1, NOW, "!", LONDON) == (
        "P-7 was cancelled, so there is nothing to vote on."
    )


def test_who_may_edit_and_when():
    assert service.edit_refusal(POLL, ANN, 0, False, "!") is None
    assert "Only the person who started P-7 can edit it" in str(
        service.edit_refusal(POLL, BOB, 0, False, "!")
    )
    assert "already has 2 votes" in str(service.edit_refusal(POLL, ANN, 2, False, "!"))
    assert "no longer open" in str(
        service.edit_refusal(replace(POLL, state=CLOSED), ANN, 0, False, "!")
    )
    assert service.edit_refusal(POLL, ANN, 5, True, "!") is None  # its own replay


def test_who_may_cancel_close_or_record_and_when():
    assert service.cancel_refusal(POLL, True, False, "!") is None
    assert "or a moderator can cancel it" in str(service.cancel_refusal(POLL, False, False, "!"))
    closed = replace(POLL, state=CLOSED)
    assert "results are out" in str(service.cancel_refusal(closed, True, False, "!"))
    cancelled = replace(POLL, state=CANCELLED)
    assert "already cancelled" in str(service.cancel_refusal(cancelled, True, False, "!"))
    assert "was cancelled" in str(service.close_refusal(cancelled, True, False, "!", NOW, LONDON))
    assert "already closed" in str(service.close_refusal(closed, True, False, "!", NOW, LONDON))
    assert service.close_refusal(closed, True, True, "!", NOW, LONDON) is None  # a replay
    # Anyone asking to close a poll that is over hears that it is, not when it "closes".
    assert "already closed" in str(service.close_refusal(closed, False, False, "!", NOW, LONDON))
    assert "closes by itself Wed 25 Nov 09:00 Europe/London" in str(
        service.close_refusal(POLL, False, False, "!", NOW, LONDON)
    )
    assert "still open" in str(service.outcome_refusal(POLL, True, "!"))
    assert service.outcome_refusal(closed, True, "!") is None
    assert "was cancelled" in str(service.outcome_refusal(cancelled, True, "!"))


def test_who_may_start_a_poll():
    assert service.create_refusal(0, 0, False) is None
    assert service.create_refusal(10, 50, True) is None  # moderators always may
    assert "power level 50 or more" in str(service.create_refusal(10, 50, False))


def test_edited_options_get_ids_of_their_own_but_proposals_keep_theirs():
    options = [Option("1", "a"), Option("2", "b")]
    assert [o.id for o in service.renumbered(PollKind.SINGLE, options, 2)] == ["e2-1", "e2-2"]
    proposal = service.renumbered(PollKind.PROPOSAL, list(PROPOSAL_OPTIONS), 1)
    assert proposal == list(PROPOSAL_OPTIONS)


def test_the_counted_reply_reads_the_time_in_the_zone_given():
    reply = service.counted_reply(POLL, "1. a", NOW, LONDON)
    assert reply == (
        "✅ Counted: your vote in P-7 is 1. a. You can change it until Wed 25 Nov 09:00 "
        "Europe/London."
    )
    assert "Europe/Paris" not in reply  # the zone the poll was made in is not the reader's
    withdrawn = service.counted_reply(POLL, "", NOW + timedelta(days=3), LONDON)
    assert withdrawn == "Your vote in P-7 is withdrawn."
