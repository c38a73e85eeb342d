"""Availability answers, the ranked table (Rallly's rule), RSVPs and time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from civicbot_plugins.meetings.service import (
    Answer,
    AnswerError,
    Rsvp,
    ballot_from_poll,
    best_slot,
    format_slot,
    numbered_slots,
    parse_availability,
    parse_rsvp,
    resolve_zone,
    slot_number,
    tally,
)
from hypothesis import given
from hypothesis import strategies as st

Y, M, N, X = Answer.YES, Answer.MAYBE, Answer.NO, Answer.NONE
LONDON = ZoneInfo("Europe/London")
SLOTS = [datetime(2026, 12, d, 18, tzinfo=UTC) for d in (8, 9, 10)]


def test_marks_per_slot_and_unmentioned_slots_are_no():
    assert parse_availability("1y 2?", 3) == {1: Y, 2: M, 3: N}
    assert parse_availability("1 3", 3) == {1: Y, 2: N, 3: Y}
    assert parse_availability("1yes, 2maybe; 3no", 3) == {1: Y, 2: M, 3: N}
    assert parse_availability("1 y 2 ?", 3) == {1: Y, 2: M, 3: N}
    assert parse_availability("1-3?", 3) == {1: M, 2: M, 3: M}


def test_all_none_and_later_tokens_override():
    assert parse_availability("all", 3) == {1: Y, 2: Y, 3: Y}
    assert parse_availability("none", 3) == {1: N, 2: N, 3: N}
    assert parse_availability("all 2n", 3) == {1: Y, 2: N, 3: Y}
    assert parse_availability("ALL?", 2) == {1: M, 2: M}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Say which times"),
        ("4y", "There is no time 4: this meeting has times 1 to 3"),
        ("0", "There is no time 0"),
        ("1z", "I couldn't read '1z'"),
        ("tuesday", "I couldn't read 'tuesday'"),
        ("3-1", "low to high, like 1-3"),
    ],
)
def test_bad_answers_say_what_to_type(text, message):
    with pytest.raises(AnswerError, match=message):
        parse_availability(text, 3)


def test_poll_response_selected_means_yes_rest_no():
    ids = ["s1", "s2", "s3"]
    assert ballot_from_poll(["s2", "s3"], ids) == {1: N, 2: Y, 3: Y}
    assert ballot_from_poll(["s2", "s2"], ids) == {1: N, 2: Y, 3: N}


@pytest.mark.parametrize("answers", [[], None, "s1", [1], ["s1", "s9"]])
def test_empty_or_spoiled_poll_response_withdraws(answers):
    assert ballot_from_poll(answers, ["s1", "s2"]) == {1: X, 2: X}


def test_ranking_is_yes_plus_if_need_be_then_yes():
    ballots = {
        "@ann": {1: Y, 2: M, 3: Y},
        "@bob": {1: Y, 2: M, 3: N},
        "@cat": {1: N, 2: Y, 3: Y},
    }
    table = tally(SLOTS, ballots)
    # slot 2: 3 can come (1 yes); slot 1: 2 (2 yes); slot 3: 2 (2 yes), later than slot 1
    assert [t.number for t in table.ranked] == [2, 1, 3]
    assert table.ranked[0].yes == ("@cat",) and table.ranked[0].maybe == ("@ann", "@bob")
    assert table.ranked[1].no == 1
    assert table.respondents == 3
    assert [t.number for t in table.by_number] == [1, 2, 3]
    best = best_slot(table)
    assert best is not None and best.slot.number == 2 and best.tied_with == ()


def test_more_yes_breaks_an_equal_can_come():
    table = tally(SLOTS, {"@a": {1: M, 2: Y, 3: N}, "@b": {1: Y, 2: Y, 3: N}})
    best = best_slot(table)
    assert best is not None and best.slot.number == 2 and best.tied_with == ()


def test_a_tie_goes_to_the_earlier_slot_and_names_the_others():
    table = tally(SLOTS, {"@a": {1: N, 2: Y, 3: Y}, "@b": {1: Y, 2: N, 3: Y}})
    assert [t.number for t in table.ranked] == [3, 1, 2]
    tie = tally(SLOTS, {"@a": {1: N, 2: Y, 3: Y}})
    best = best_slot(tie)
    assert best is not None and best.slot.number == 2 and best.tied_with == (3,)


def test_earlier_means_earlier_start_not_lower_number():
    slots = [SLOTS[2], SLOTS[0]]  # slot 1 is later than slot 2
    best = best_slot(tally(slots, {"@a": {1: Y, 2: Y}}))
    assert best is not None and best.slot.number == 2 and best.tied_with == (1,)


def test_nobody_can_come_means_no_best_slot_and_withdrawn_do_not_count():
    assert best_slot(tally(SLOTS, {})) is None
    table = tally(SLOTS, {"@a": {1: N, 2: N, 3: N}, "@b": {1: X, 2: X, 3: X}})
    assert best_slot(table) is None
    assert table.respondents == 1


def test_answers_for_slots_that_do_not_exist_are_ignored():
    table = tally(SLOTS[:1], {"@a": {1: Y, 7: Y}})
    assert [(t.number, t.yes) for t in table.ranked] == [(1, ("@a",))]


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.lists(st.sampled_from([Y, M, N, X]), min_size=3, max_size=3),
        max_size=30,
    )
)
def test_the_winner_is_never_beaten(raw):
    ballots = {p: dict(enumerate(answers, start=1)) for p, answers in raw.items()}
    table = tally(SLOTS, ballots)
    assert sum(len(t.yes) + len(t.maybe) + t.no for t in table.ranked) <= 3 * len(ballots)
    best = best_slot(table)
    if best is None:
        assert all(t.can_come == 0 for t in table.ranked)
        return
    for other in table.ranked:
        assert other.score <= best.slot.score
        if other.score == best.slot.score:
            assert other.start >= best.slot.start


def test_rsvp_words():
    assert parse_rsvp("Going") is Rsvp.GOING
    assert parse_rsvp(" not  going ") is Rsvp.NO
    assert parse_rsvp("can’t") is Rsvp.NO
    assert parse_rsvp("maybe") is Rsvp.MAYBE
    with pytest.raises(AnswerError, match="going, maybe or no"):
        parse_rsvp("perchance")


def test_slot_number_is_checked():
    assert slot_number("2", 3) == 2
    assert slot_number("#3", 3) == 3
    for bad in ("0", "4", "two", ""):
        with pytest.raises(AnswerError, match="1 to 3"):
            slot_number(bad, 3)


def test_time_zones_by_name_in_any_case_and_unknown_ones_refused():
    assert resolve_zone("europe/warsaw").key == "Europe/Warsaw"
    assert resolve_zone(" America/New York ").key == "America/New_York"
    assert resolve_zone("utc").key == "UTC"
    for bad in ("Mars/Olympus", "", "../etc/passwd", "Europe/"):
        with pytest.raises(AnswerError, match="Use a name like Europe/London"):
            resolve_zone(bad)


def test_slots_are_echoed_with_weekday_date_time_and_zone():
    start = datetime(2026, 12, 8, 18, tzinfo=UTC)
    assert (
        format_slot(start, timedelta(minutes=90), LONDON) == "Tue 8 Dec 18:00–19:30 Europe/London"
    )
    late = datetime(2026, 12, 8, 23, tzinfo=UTC)
    assert format_slot(late, timedelta(hours=2), LONDON) == (
        "Tue 8 Dec 23:00 – Wed 9 Dec 01:00 Europe/London"
    )
    assert numbered_slots([start], timedelta(hours=1), ZoneInfo("Europe/Warsaw")) == [
        "1. Tue 8 Dec 19:00–20:00 Europe/Warsaw"
    ]


@given(st.text(max_size=40), st.integers(min_value=1, max_value=20))
def test_any_answer_text_gives_a_full_ballot_or_a_friendly_error(text, slots):
    try:
        ballot = parse_availability(text, slots)
    except AnswerError as exc:
        assert str(exc)
        return
    assert sorted(ballot) == list(range(1, slots + 1))
    assert set(ballot.values()) <= {Y, M, N}
