"""Calendar files parse back (with icalendar and recurring-ical-events) to the right times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import recurring_ical_events
from civicbot_plugins.meetings.ics import CalendarEntry, build_calendar, ics_filename, make_uid
from civicbot_plugins.meetings.recurrence import Frequency, Recurrence, Schedule
from icalendar import Calendar

LONDON = ZoneInfo("Europe/London")
HOUR = timedelta(hours=1)
NOW = datetime(2026, 12, 1, 19, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def entry(schedule: Schedule, **changes) -> CalendarEntry:
    values = {
        "uid": make_uid(3, "a1b2c3d4"),
        "sequence": 0,
        "title": "Litter pick, planning; all welcome",
        "schedule": schedule,
        "dtstamp": NOW,
        "location": "Church Hall, High St",
        "room_link": "https://matrix.to/#/!abc:example.org",
    }
    values.update(changes)
    return CalendarEntry(**values)


def parse(data: bytes) -> Calendar:
    assert data.startswith(b"BEGIN:VCALENDAR\r\n") and data.endswith(b"END:VCALENDAR\r\n")
    assert max(len(line) for line in data.split(b"\r\n")) <= 75  # folded as RFC 5545 §3.1 says
    return Calendar.from_ical(data)


def test_one_off_meeting_parses_back_to_its_utc_start_with_tzid_and_vtimezone():
    cal = parse(
        build_calendar(entry(Schedule(utc(2026, 12, 8, 18), timedelta(minutes=90), LONDON)))
    )
    assert cal["METHOD"] == "PUBLISH" and cal["VERSION"] == "2.0" and "PRODID" in cal
    (event,) = cal.walk("VEVENT")
    assert event["UID"] == "m3-a1b2c3d4@civicbot.invalid"
    assert event.decoded("DTSTART") == utc(2026, 12, 8, 18)
    assert event.decoded("DTEND") == utc(2026, 12, 8, 19, 30)
    assert event["DTSTART"].params["TZID"] == "Europe/London"
    assert event.decoded("DTSTAMP") == NOW
    assert event["SEQUENCE"] == 0
    assert str(event["SUMMARY"]) == "Litter pick, planning; all welcome"
    assert str(event["LOCATION"]) == "Church Hall, High St"
    assert "https://matrix.to/#/!abc:example.org" in str(event["DESCRIPTION"])
    assert event["STATUS"] == "CONFIRMED"
    (zone,) = cal.walk("VTIMEZONE")
    assert zone["TZID"] == "Europe/London"


def test_a_utc_meeting_is_written_in_utc_without_vtimezone():
    data = build_calendar(entry(Schedule(utc(2026, 12, 8, 18), HOUR, ZoneInfo("UTC"))))
    assert b"DTSTART:20261208T180000Z" in data
    assert not parse(data).walk("VTIMEZONE")


def test_online_meeting_has_url_and_the_link_where_people_look():
    cal = parse(
        build_calendar(
            entry(
                Schedule(utc(2026, 12, 8, 18), HOUR, LONDON),
                location=None,
                url="https://meet.jit.si/our-group",
            )
        )
    )
    (event,) = cal.walk("VEVENT")
    assert str(event["URL"]) == "https://meet.jit.si/our-group"
    assert str(event["LOCATION"]) == "https://meet.jit.si/our-group"
    assert "Join: https://meet.jit.si/our-group" in str(event["DESCRIPTION"])


def test_repeating_meeting_keeps_19_00_across_both_dst_changes_in_london():
    rule = Recurrence(Frequency.WEEKLY, weekday=1, until=utc(2027, 11, 30, 23, 59))
    schedule = Schedule(utc(2027, 3, 2, 19), HOUR, LONDON, rule)
    data = build_calendar(entry(schedule))
    assert b"RRULE:FREQ=WEEKLY;UNTIL=20271130T235900Z;BYDAY=TU" in data
    cal = parse(data)
    expanded = recurring_ical_events.of(cal).between(utc(2027, 1, 1), utc(2028, 1, 1))
    starts = sorted(e.decoded("DTSTART").astimezone(UTC) for e in expanded)
    assert starts == [o.start for o in schedule.occurrences()]  # the calendar agrees with us
    assert len(starts) == 40
    assert all(s.astimezone(LONDON).hour == 19 for s in starts)
    assert utc(2027, 3, 23, 19) in starts and utc(2027, 3, 30, 18) in starts
    assert utc(2027, 10, 26, 18) in starts and utc(2027, 11, 2, 19) in starts


def test_cancelled_and_moved_occurrences_use_exdate_and_recurrence_id():
    rule = Recurrence(Frequency.MONTHLY, weekday=1, nth=2, count=6)
    schedule = Schedule(
        utc(2026, 12, 8, 19),
        HOUR,
        LONDON,
        rule,
        cancelled=frozenset({utc(2027, 1, 12, 19)}),
        moved={utc(2027, 4, 13, 18): utc(2027, 4, 14, 18)},  # Tue 13 Apr (BST) to Wed
    )
    data = build_calendar(entry(schedule, sequence=4))
    assert b"EXDATE;TZID=Europe/London:20270112T190000" in data
    assert b"RECURRENCE-ID;TZID=Europe/London:20270413T190000" in data
    cal = parse(data)
    master, override = cal.walk("VEVENT")
    assert master["UID"] == override["UID"] and override["SEQUENCE"] == 4
    expanded = recurring_ical_events.of(cal).between(utc(2026, 12, 1), utc(2027, 12, 1))
    starts = sorted(e.decoded("DTSTART").astimezone(UTC) for e in expanded)
    assert starts == [o.start for o in schedule.occurrences()]
    assert utc(2027, 1, 12, 19) not in starts and utc(2027, 4, 14, 18) in starts
    assert len(starts) == 5


def test_cancelling_the_whole_meeting():
    data = build_calendar(
        entry(Schedule(utc(2026, 12, 8, 18), HOUR, LONDON), sequence=2, cancelled=True)
    )
    cal = parse(data)
    assert cal["METHOD"] == "PUBLISH"
    (event,) = cal.walk("VEVENT")
    assert event["STATUS"] == "CANCELLED" and event["SEQUENCE"] == 2
    assert event["UID"] == "m3-a1b2c3d4@civicbot.invalid"


def test_user_text_is_escaped_not_injected():
    evil = "Tea\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nSUMMARY:owned"
    cal = parse(
        build_calendar(
            entry(Schedule(utc(2026, 12, 8, 18), HOUR, LONDON), title=evil, description="a;b,c\\d")
        )
    )
    (event,) = cal.walk("VEVENT")
    assert str(event["SUMMARY"]) == evil.replace("\r\n", "\n")  # one event, text intact
    assert str(event["DESCRIPTION"]).startswith("a;b,c\\d")


def test_file_names():
    assert ics_filename("M-3", "Litter pick: planning!") == "M-3-litter-pick-planning.ics"
    assert ics_filename("M-4", "🎉") == "M-4.ics"
