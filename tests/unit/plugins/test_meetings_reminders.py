"""Reminders: stable keys, exactly once, and what happens after the bot was down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from civicbot_plugins.meetings.recurrence import Frequency, Recurrence, Schedule
from civicbot_plugins.meetings.reminders import (
    DEFAULT_OFFSETS,
    Delivery,
    late_note,
    pending_reminders,
    plan_due,
    reminder_key,
    reminders_between,
)

LONDON = ZoneInfo("Europe/London")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
START = datetime(2026, 12, 8, 19, tzinfo=UTC)
ONE_OFF = Schedule(START, HOUR, LONDON)


def test_default_offsets_give_a_day_and_an_hour_before():
    found = pending_reminders(3, ONE_OFF, DEFAULT_OFFSETS, START - 3 * DAY, sent=set())
    assert [r.due_at for r in found] == [START - DAY, START - HOUR]
    assert found[0].key == "M3/20261208T190000Z/20261208T190000Z/-1440m"
    assert found[1].key == "M3/20261208T190000Z/20261208T190000Z/-60m"
    assert found[0].key == reminder_key(3, found[0].occurrence, DAY)


def test_sent_keys_are_not_armed_again():
    first = pending_reminders(3, ONE_OFF, DEFAULT_OFFSETS, START - 3 * DAY, sent=set())
    again = pending_reminders(3, ONE_OFF, DEFAULT_OFFSETS, START - 3 * DAY, {first[0].key})
    assert again == [first[1]]


def test_a_move_gets_new_keys_so_the_new_time_is_reminded():
    moved = Schedule(START + DAY, HOUR, LONDON)
    old = {r.key for r in pending_reminders(3, ONE_OFF, DEFAULT_OFFSETS, START - 3 * DAY, set())}
    new = pending_reminders(3, moved, DEFAULT_OFFSETS, START - 3 * DAY, sent=old)
    assert len(new) == 2 and not old & {r.key for r in new}


def test_reminders_due_before_the_meeting_was_fixed_are_left_out():
    fixed_at = START - 5 * HOUR
    found = pending_reminders(3, ONE_OFF, DEFAULT_OFFSETS, fixed_at, set(), since=fixed_at)
    assert [r.offset for r in found] == [HOUR]


def test_after_downtime_late_with_a_note_if_not_started_else_skipped():
    reminders = pending_reminders(3, ONE_OFF, [DAY], START - 3 * DAY, set())
    (reminder,) = reminders
    on_time = plan_due(reminders, reminder.due_at + timedelta(minutes=2))
    assert on_time == [(reminder, Delivery.ON_TIME)]
    late = plan_due(reminders, START - 40 * timedelta(minutes=1))
    assert late == [(reminder, Delivery.LATE)]
    assert late_note(reminder, START - timedelta(minutes=40)) == (
        "Sorry, this reminder is late (the bot was offline); the meeting starts in 40 minutes."
    )
    assert plan_due(reminders, START) == [(reminder, Delivery.SKIP)]
    assert plan_due(reminders, START - 2 * DAY) == []  # not due yet


def test_several_missed_reminders_of_one_occurrence_send_only_the_latest():
    reminders = pending_reminders(3, ONE_OFF, DEFAULT_OFFSETS, START - 3 * DAY, set())
    plan = plan_due(reminders, START - timedelta(minutes=30))
    assert [(r.offset, d) for r, d in plan] == [(DAY, Delivery.SKIP), (HOUR, Delivery.LATE)]


def test_a_restart_does_not_arm_an_occurrence_that_has_started():
    assert pending_reminders(3, ONE_OFF, DEFAULT_OFFSETS, START + timedelta(minutes=1), set()) == []
    overdue = pending_reminders(3, ONE_OFF, DEFAULT_OFFSETS, START - timedelta(minutes=30), set())
    assert [r.offset for r in overdue] == [DAY, HOUR]  # handed to plan_due, which decides


def test_recurring_reminders_follow_the_wall_clock_across_dst():
    rule = Recurrence(Frequency.WEEKLY, weekday=1, count=6)  # Tuesdays 19:00 from 16 Mar 2027
    schedule = Schedule(datetime(2027, 3, 16, 19, tzinfo=UTC), HOUR, LONDON, rule)
    now = datetime(2027, 3, 1, tzinfo=UTC)
    found = reminders_between(5, schedule, [HOUR], now, now + timedelta(days=60))
    assert [r.due_at.astimezone(LONDON).hour for r in found] == [18] * 6
    assert [r.due_at for r in found][:3] == [
        datetime(2027, 3, 16, 18, tzinfo=UTC),
        datetime(2027, 3, 23, 18, tzinfo=UTC),
        datetime(2027, 3, 30, 17, tzinfo=UTC),  # BST from 28 March
    ]
    assert len({r.key for r in found}) == 6


def test_the_horizon_limits_how_far_ahead_an_endless_rule_is_armed():
    endless = Schedule(START, HOUR, LONDON, Recurrence(Frequency.WEEKLY, weekday=1))
    found = pending_reminders(3, endless, DEFAULT_OFFSETS, START - DAY * 2, set())
    assert 9 <= len(found) <= 11  # five weeks of two reminders each
    assert max(r.due_at for r in found) <= START - DAY * 2 + timedelta(days=35)


def test_cancelled_occurrences_have_no_reminders():
    rule = Recurrence(Frequency.WEEKLY, weekday=1, count=2)
    schedule = Schedule(START, HOUR, LONDON, rule, cancelled=frozenset({START}))
    found = pending_reminders(3, schedule, [HOUR], START - DAY, set())
    assert [r.occurrence.start for r in found] == [START + 7 * DAY]
