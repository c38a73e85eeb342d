"""Repeating meetings keep their wall-clock time across DST; single occurrences change."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from civicbot_plugins.meetings.recurrence import (
    Frequency,
    Recurrence,
    Schedule,
    first_start,
)

LONDON = ZoneInfo("Europe/London")
HOUR = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def weekly_tuesdays_over_both_changes() -> Schedule:
    # Tue 2 Mar 2027 19:00 GMT, weekly until November: BST runs 28 Mar - 31 Oct 2027.
    rule = Recurrence(Frequency.WEEKLY, weekday=1, until=utc(2027, 11, 30, 23, 59))
    return Schedule(utc(2027, 3, 2, 19), HOUR, LONDON, rule)


def test_wall_clock_stays_at_19_and_utc_moves_with_dst():
    schedule = weekly_tuesdays_over_both_changes()
    starts = [o.start for o in schedule.occurrences()]
    assert len(starts) == 40
    assert all(s.astimezone(LONDON).hour == 19 and s.astimezone(LONDON).minute == 0 for s in starts)
    assert all(s.astimezone(LONDON).weekday() == 1 for s in starts)
    assert utc(2027, 3, 23, 19) in starts  # last Tuesday in GMT
    assert utc(2027, 3, 30, 18) in starts  # first in BST: 18:00 UTC
    assert utc(2027, 10, 26, 18) in starts  # last in BST
    assert utc(2027, 11, 2, 19) in starts  # back to GMT


def test_monthly_nth_weekday_and_last():
    second = Recurrence(Frequency.MONTHLY, weekday=1, nth=2, count=4)
    starts = [o.start for o in Schedule(utc(2026, 12, 8, 19), HOUR, LONDON, second).occurrences()]
    assert starts == [utc(2026, 12, 8, 19), utc(2027, 1, 12, 19), utc(2027, 2, 9, 19),
                      utc(2027, 3, 9, 19)]  # fmt: skip
    last = Recurrence(Frequency.MONTHLY, weekday=4, nth=-1, count=3)
    starts = [o.start for o in Schedule(utc(2027, 3, 26, 19), HOUR, LONDON, last).occurrences()]
    assert starts == [utc(2027, 3, 26, 19), utc(2027, 4, 30, 18), utc(2027, 5, 28, 18)]


def test_window_and_limit():
    schedule = weekly_tuesdays_over_both_changes()
    window = schedule.occurrences(after=utc(2027, 3, 23, 19), before=utc(2027, 4, 6, 18))
    assert [o.start for o in window] == [utc(2027, 3, 30, 18)]
    assert len(schedule.occurrences(limit=3)) == 3
    assert schedule.next_occurrence(utc(2027, 3, 2, 19)) == window[0].__class__(
        utc(2027, 3, 9, 19), utc(2027, 3, 9, 19), utc(2027, 3, 9, 20)
    )


def test_cancelled_and_moved_occurrences():
    base = weekly_tuesdays_over_both_changes()
    moved_to = utc(2027, 3, 10, 19)  # Tue 9 Mar moves to Wed 10 Mar
    schedule = Schedule(
        base.start, HOUR, LONDON, base.recurrence,
        cancelled=frozenset({utc(2027, 3, 16, 19)}), moved={utc(2027, 3, 9, 19): moved_to},
    )  # fmt: skip
    first = schedule.occurrences(limit=4)
    assert [o.start for o in first] == [
        utc(2027, 3, 2, 19), moved_to, utc(2027, 3, 23, 19), utc(2027, 3, 30, 18)
    ]  # fmt: skip
    assert first[1].moved and first[1].original == utc(2027, 3, 9, 19)
    assert first[1].end == moved_to + HOUR
    # a move into the window counts even when the original time is outside it
    later = Schedule(base.start, HOUR, LONDON, base.recurrence,
                     moved={utc(2027, 3, 2, 19): utc(2027, 3, 12, 19)})  # fmt: skip
    inside = later.occurrences(after=utc(2027, 3, 10), before=utc(2027, 3, 13))
    assert [o.start for o in inside] == [utc(2027, 3, 12, 19)]
    assert len(schedule.occurrences()) == 39


def test_original_on_a_local_day():
    schedule = weekly_tuesdays_over_both_changes()
    assert schedule.original_on(date(2027, 4, 6)) == utc(2027, 4, 6, 18)
    assert schedule.original_on(date(2027, 4, 7)) is None  # a Wednesday
    assert schedule.original_on(date(2028, 1, 4)) is None  # after the end


def test_one_off_meeting():
    schedule = Schedule(utc(2026, 12, 8, 18), HOUR, LONDON)
    assert [o.start for o in schedule.occurrences()] == [utc(2026, 12, 8, 18)]
    assert schedule.occurrences(after=utc(2026, 12, 8, 18)) == []
    assert schedule.last_end == utc(2026, 12, 8, 19)
    assert schedule.original_on(date(2026, 12, 8)) == utc(2026, 12, 8, 18)


def test_last_end_of_endless_count_and_until_rules():
    endless = Schedule(utc(2026, 12, 8, 19), HOUR, LONDON, Recurrence(Frequency.WEEKLY, 1))
    assert endless.last_end is None
    assert len(endless.occurrences(limit=500)) == 500
    counted = Schedule(utc(2026, 12, 8, 19), HOUR, LONDON, Recurrence(Frequency.WEEKLY, 1, count=3))
    assert counted.last_end == utc(2026, 12, 22, 20)


def test_recurrence_round_trips_through_json():
    rule = Recurrence(Frequency.MONTHLY, 1, interval=1, nth=2, until=utc(2027, 6, 30, 22, 59))
    assert Recurrence.from_json(rule.to_json()) == rule
    assert rule.ical_rule() == {
        "FREQ": "MONTHLY",
        "BYDAY": "2TU",
        "UNTIL": utc(2027, 6, 30, 22, 59),
    }


def test_first_start_skips_a_time_already_past_today():
    rule = Recurrence(Frequency.WEEKLY, weekday=1)
    now = utc(2026, 12, 1, 19)  # a Tuesday
    assert first_start(rule, 18, 0, LONDON, now) == utc(2026, 12, 8, 18)
    assert first_start(rule, 20, 0, LONDON, now) == utc(2026, 12, 1, 20)
    fortnightly = Recurrence(Frequency.WEEKLY, weekday=2, interval=2)
    assert first_start(fortnightly, 19, 0, LONDON, now) == utc(2026, 12, 2, 19)


def test_a_time_skipped_by_the_spring_change_lands_after_the_gap():
    rule = Recurrence(Frequency.WEEKLY, weekday=6, count=3)  # Sundays 01:30 London
    schedule = Schedule(utc(2027, 3, 21, 1, 30), HOUR, LONDON, rule)
    starts = [o.start for o in schedule.occurrences()]
    # 28 Mar 01:30 does not exist: fold=0 takes GMT's offset, 01:30 GMT = 02:30 BST
    assert starts == [utc(2027, 3, 21, 1, 30), utc(2027, 3, 28, 1, 30), utc(2027, 4, 4, 0, 30)]


def test_describe_a_schedule_with_its_wall_time():
    rule = Recurrence(Frequency.MONTHLY, 1, nth=2, until=utc(2027, 6, 30, 22, 59))
    schedule = Schedule(utc(2026, 12, 8, 19), HOUR, LONDON, rule)
    assert schedule.describe() == (
        "every 2nd Tuesday of the month at 19:00 Europe/London, until Wed 30 Jun 2027"
    )
    summer = Schedule(utc(2027, 4, 5, 17), HOUR, LONDON, Recurrence(Frequency.WEEKLY, 0, 2))
    assert summer.describe() == "every other Monday at 18:00 Europe/London"
