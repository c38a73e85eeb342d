"""Reading `!meet` proposals: slots, settings, repeat rules, and the replies to bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from civicbot_plugins.meetings.parsing import (
    DEFAULT_DURATION,
    MAX_SLOTS,
    MeetingInputError,
    parse_proposal,
    split_parts,
)
from civicbot_plugins.meetings.recurrence import Frequency
from hypothesis import given, settings
from hypothesis import strategies as st

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)  # Tue 1 Dec 2026, 19:00 in London too


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def parse(text: str, zone: ZoneInfo = LONDON):
    return parse_proposal(text, zone, NOW)


def test_title_then_times_split_by_bars_sorted_with_defaults():
    p = parse("Litter pick planning | tue 8 dec 18:00 | next saturday 10am | 2026-12-24 19:30")
    assert p.title == "Litter pick planning"
    assert p.slots == (utc(2026, 12, 5, 10), utc(2026, 12, 8, 18), utc(2026, 12, 24, 19, 30))
    assert p.duration == DEFAULT_DURATION == timedelta(hours=1)
    assert p.location is p.url is p.decide_by is p.recurrence is None
    assert p.zone is LONDON


def test_one_time_per_line_and_list_markers():
    p = parse("Garden meeting\n1. tue 8 dec 18:00\n- wed 9 dec 18:00\n\n")
    assert p.slots == (utc(2026, 12, 8, 18), utc(2026, 12, 9, 18))


def test_split_parts_prefers_lines_over_bars():
    assert split_parts("A | B\nC") == ["A | B", "C"]
    assert split_parts(" A | | B | ") == ["A", "B"]


def test_times_are_read_in_the_room_zone():
    p = parse("Call | tue 8 dec 18:00", ZoneInfo("Europe/Warsaw"))
    assert p.slots == (utc(2026, 12, 8, 17),)


def test_duration_place_link_and_deadline():
    p = parse("Plan | tue 8 dec 18:00 | for 90 minutes | at Church Hall | decide by friday 12:00")
    assert p.duration == timedelta(minutes=90)
    assert p.location == "Church Hall" and p.url is None
    assert p.decide_by == utc(2026, 12, 4, 12)
    online = parse("Plan | tue 8 dec 18:00 | for 2h | at https://meet.jit.si/our-group")
    assert online.url == "https://meet.jit.si/our-group" and online.location is None
    assert online.duration == timedelta(hours=2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "title"),
        ("Just a title", "at least one time"),
        ("Plan | 2026-12-01 09:00", "in the past"),
        ("Plan | tue 8 dec 18:00 | whenever suits", "Time 2: I couldn't read 'whenever suits'"),
        ("Plan | tue 8 dec 18:00 | for ages", "as a length"),
        ("Plan | tue 8 dec 18:00 | for 2 minutes", "between 5 minutes and 24 hours"),
        ("Plan | tue 8 dec 18:00 | for 2 days", "between 5 minutes and 24 hours"),
        ("Plan | tue 8 dec 18:00 | 8 dec 6pm", "Times 1 and 2 are both"),
        ("Plan | tue 8 dec 18:00 | decide by 9 dec 12:00", "not before the first time"),
        ("Plan | tue 8 dec 18:00 | decide by yesterday", "The deadline"),
        ("Plan | tue 8 dec 18:00 | at x | at y", "two places"),
        ("Plan | tue 8 dec 18:00 | at https://", "looks broken"),
        ("Plan | tue 8 dec | at 7pm", "'at' is for the place"),
        ("Plan | tue 8 dec 18:00 | until 1 jan", "for meetings that repeat"),
        ("Plan | tue 8 dec 18:00 | for 3 times", "for meetings that repeat"),
        ("x" * 201 + " | tue 8 dec 18:00", "under 200"),
    ],
)
def test_bad_input_says_what_to_type(text, message):
    with pytest.raises(MeetingInputError, match=message):
        parse(text)


def test_more_than_twenty_slots_is_refused_before_reading_them():
    days = " | ".join(f"{d} jan 2027 18:00" for d in range(1, MAX_SLOTS + 2))
    with pytest.raises(MeetingInputError, match=f"You gave {MAX_SLOTS + 1} times; at most 20"):
        parse(f"Plan | {days}")
    twenty = " | ".join(f"{d} jan 2027 18:00" for d in range(1, MAX_SLOTS + 1))
    assert len(parse(f"Plan | {twenty}").slots) == MAX_SLOTS


def test_second_tuesday_of_the_month_with_an_end_date():
    p = parse("Residents | every 2nd tuesday 19:00 | until 2027-06-30 | at Church Hall")
    rule = p.recurrence
    assert rule is not None and rule.freq is Frequency.MONTHLY
    assert (rule.weekday, rule.nth, rule.interval, rule.count) == (1, 2, 1, None)
    assert p.slots == (utc(2026, 12, 8, 19),)  # 8 Dec is the 2nd Tuesday of December 2026
    assert rule.until == utc(2027, 6, 30, 22, 59)  # end of the day, BST
    assert p.location == "Church Hall"
    assert rule.describe(LONDON) == "every 2nd Tuesday of the month, until Wed 30 Jun 2027"


@pytest.mark.parametrize(
    ("text", "weekday", "interval", "first"),
    [
        ("every week on monday 18:30", 0, 1, utc(2026, 12, 7, 18, 30)),
        ("every monday 6:30pm", 0, 1, utc(2026, 12, 7, 18, 30)),
        ("every other friday 10am", 4, 2, utc(2026, 12, 4, 10)),
        ("every 3 weeks on thu at 7.15pm", 3, 3, utc(2026, 12, 3, 19, 15)),
        ("every tuesday 20:00", 1, 1, utc(2026, 12, 1, 20)),  # today, still to come
        ("every tuesday 18:00", 1, 1, utc(2026, 12, 8, 18)),  # today's has passed
    ],
)
def test_weekly_rules(text, weekday, interval, first):
    p = parse(f"Garden | {text}")
    assert p.recurrence is not None and p.recurrence.freq is Frequency.WEEKLY
    assert (p.recurrence.weekday, p.recurrence.interval) == (weekday, interval)
    assert p.slots == (first,)


def test_count_inline_or_as_its_own_part():
    inline = parse("Garden | every week on monday 18:30 for 6 times")
    apart = parse("Garden | every week on monday 18:30 | for 6 times | for 90 minutes")
    assert inline.recurrence == apart.recurrence
    assert inline.recurrence is not None and inline.recurrence.count == 6
    assert apart.duration == timedelta(minutes=90)


def test_last_friday_and_month_on_the_form():
    last = parse("Quiz | every last friday 19:30")
    assert last.recurrence is not None and last.recurrence.nth == -1
    assert last.slots == (utc(2026, 12, 25, 19, 30),)
    other = parse("Quiz | every month on the first monday 19:00")
    assert other.recurrence is not None and other.recurrence.nth == 1
    assert other.slots == (utc(2026, 12, 7, 19),)  # 1 Dec is a Tuesday


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("every tuesday", "as a repeat with a time"),
        ("every blue moon 19:00", "as a repeat with a time"),
        ("every tuesday 25:00", "not a time"),
        ("every tuesday 13pm", "not a time"),
        ("every tuesday 19:00 | for 0 times", "from 1 to 200"),
        ("every tuesday 19:00 | until 1 jan 2027 | for 3 times", "not both"),
        ("every tuesday 19:00 | until 1 dec 2026 09:00", "in the past"),
        ("every tuesday 19:00 | wed 9 dec 18:00", "takes its time from the rule"),
        ("every tuesday 19:00 | decide by friday", "leave out 'decide by'"),
        ("every tuesday 19:00 | every monday 19:00", "two repeat rules"),
    ],
)
def test_bad_repeat_rules(text, message):
    with pytest.raises(MeetingInputError, match=message):
        parse(f"Garden | {text}")


def test_an_until_before_the_first_occurrence():
    with pytest.raises(MeetingInputError, match="no date before the end"):
        parse("Garden | every 2nd tuesday 19:00 | until 5 dec 2026")


FRAGMENTS = [
    "every", "2nd", "other", "tuesday", "mon", "19:00", "7pm", "until", "for", "3", "times",
    "minutes", "at", "decide by", "friday", "|", "\n", "week", "on", "last", "of the month",
    "2027-01-05", "x", "", "0", "99:99", "every 99 weeks on sun 10am",
]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12))
def test_any_input_gives_a_proposal_or_a_friendly_error(words):
    try:
        p = parse("Title | " + " ".join(words))
    except MeetingInputError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return
    assert 1 <= len(p.slots) <= MAX_SLOTS
    assert all(s > NOW for s in p.slots)
    assert list(p.slots) == sorted(set(p.slots))
