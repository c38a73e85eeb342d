"""Dates residents type, read in the room's zone and echoed back the same way."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from civicbot.core.commands import UsageError
from civicbot.core.dates import (
    DateError,
    Duration,
    When,
    describe_delta,
    format_when,
    has_explicit_time,
    on_the_minute,
    parse_duration,
    parse_when,
    same_minute_or_later,
)

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
# Monday 23 November 2026, 09:00 in London (UTC+0 in winter).
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 days", timedelta(days=3)),
        ("in 3 days", timedelta(days=3)),
        ("48h", timedelta(hours=48)),
        ("90m", timedelta(minutes=90)),
        ("1 week 2 days", timedelta(days=9)),
        ("an hour", timedelta(hours=1)),
        ("2 weeks and 1 day", timedelta(days=15)),
        ("1.5 hours", timedelta(minutes=90)),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["friday", "3 bananas", "", "days", "in", "3 days ago please"])
def test_not_durations(text):
    assert parse_duration(text) is None


def test_relative_duration_counts_from_now_exactly():
    assert parse_when("in 3 days", LONDON, NOW) == NOW + timedelta(days=3)


def test_weekday_and_time_in_the_rooms_zone():
    when = parse_when("friday 18:00", LONDON, NOW)
    assert when == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert format_when(when, LONDON, NOW) == "Fri 27 Nov 18:00 Europe/London"


def test_the_zone_changes_the_instant():
    when = parse_when("friday 18:00", NEW_YORK, NOW)
    assert when == datetime(2026, 11, 27, 23, 0, tzinfo=UTC)  # EST is UTC-5
    assert format_when(when, NEW_YORK, NOW) == "Fri 27 Nov 18:00 America/New_York"


def test_a_day_without_a_time_means_the_default_time():
    assert parse_when("friday", LONDON, NOW) == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    morning = parse_when("2 Dec", LONDON, NOW, default_time=time(9, 30))
    assert morning == datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def test_day_month_order_outside_the_us():
    assert parse_when("2/12 18:00", LONDON, NOW) == datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    assert parse_when("2/12 18:00", NEW_YORK, NOW).month == 2


def test_summer_time_is_applied():
    when = parse_when("1 June 2027 18:00", LONDON, NOW)
    assert when == datetime(2027, 6, 1, 17, 0, tzinfo=UTC)
    assert format_when(when, LONDON, NOW) == "Tue 1 Jun 2027 18:00 Europe/London"


def test_a_wall_time_in_the_spring_gap_moves_forward():
    when = parse_when("28 March 2027 01:30", LONDON, NOW)
    assert when.astimezone(LONDON).hour == 2  # 01:30 does not exist that night


def test_past_and_nonsense_say_what_to_type():
    with pytest.raises(DateError, match="in the past"):
        parse_when("yesterday", LONDON, NOW)
    with pytest.raises(DateError, match=r"couldn't read 'whenever' as a time\. Try 'in 3 days'"):
        parse_when("whenever", LONDON, NOW)
    with pytest.raises(DateError, match="three years"):
        parse_when("in 200 weeks", LONDON, NOW)
    assert parse_when("yesterday", LONDON, NOW, allow_past=True) < NOW


def test_explicit_times_are_recognised():
    assert has_explicit_time("friday 18:00")
    assert has_explicit_time("sat 6pm")
    assert has_explicit_time("tomorrow noon")
    assert not has_explicit_time("next friday")


def test_describe_delta():
    assert describe_delta(timedelta(days=4)) == "in 4 days"
    assert describe_delta(timedelta(hours=24)) == "in 24 hours"
    assert describe_delta(timedelta(minutes=5)) == "in 5 minutes"
    assert describe_delta(timedelta(seconds=10)) == "now"
    assert describe_delta(-timedelta(hours=3)) == "3 hours ago"


async def test_when_converter_resolves_in_the_handler():
    class FakeContext:
        now = NOW

        async def timezone(self):
            return NEW_YORK

    when = When.convert("  friday   18:00 ", FakeContext())  # type: ignore[arg-type]
    assert when == "friday 18:00"
    assert await when.resolve(FakeContext()) == datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    with pytest.raises(UsageError, match="in the past"):
        await When("yesterday").resolve(FakeContext())


def test_duration_converter():
    assert Duration.convert("48h", None) == timedelta(hours=48)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        Duration.convert("soon", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "in 99999999999 days",
        "in 9999999 days",
        "in " + "9" * 90 + " days",
        "in 99999999999999999999 weeks and 3 hours",
        "in 3 years",
    ],
)
def test_huge_durations_are_too_far_away_not_a_crash(text):
    with pytest.raises(DateError, match="more than three years away"):
        parse_when(text, LONDON, NOW)


@pytest.mark.parametrize("text", ["in 1e400 days", "31 Dec 9999 23:59", "1 Jan 0001 00:30"])
def test_dates_at_the_edge_of_the_calendar_get_a_friendly_error(text):
    with pytest.raises(DateError):
        parse_when(text, ZoneInfo("Pacific/Kiritimati"), NOW)


def test_long_input_is_not_echoed_back_whole():
    with pytest.raises(DateError) as raised:
        parse_when("whenever " * 500, LONDON, NOW)
    assert len(str(raised.value)) < 200


def test_durations_longer_than_a_century_are_refused():
    with pytest.raises(DateError, match="far too long"):
        parse_duration("99999999999 days")
    with pytest.raises(UsageError, match="far too long"):
        Duration.convert("99999999999d", None)  # type: ignore[arg-type]
    assert parse_duration("520 weeks") == timedelta(weeks=520)


def test_text_far_too_long_for_a_date_is_not_parsed():
    with pytest.raises(DateError, match="couldn't read 'xxxx"):
        parse_when("x" * 5000, LONDON, NOW)
    with pytest.raises(DateError, match="couldn't read 'in 9999"):
        parse_when("in " + "9" * 5000 + " days", LONDON, NOW)
    assert parse_when("  Friday   18:00  " + " " * 200, LONDON, NOW).day == 27


@pytest.fixture
def languages():
    """Set the date languages for one test, and put the default back after it."""
    from civicbot.core import dates

    saved = dates._languages
    yield dates.use_languages
    dates.use_languages(saved)


def test_dates_are_read_only_in_the_configured_languages(languages):
    """Issue 9: dateparser tried all ~200 languages on text it could not read (seconds on the
    first failure); it now reads only bot.languages."""
    with pytest.raises(DateError):
        parse_when("vendredi 18:00", LONDON, NOW)
    languages(["en", "fr"])
    assert parse_when("vendredi 18:00", LONDON, NOW) == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert parse_when("friday 18:00", LONDON, NOW).day == 27


def test_warm_up_runs_in_the_background_and_sets_the_languages(languages):
    from civicbot.core import dates

    thread = dates.warm_up(["en", "de"])
    assert thread.daemon
    thread.join(30)
    assert not thread.is_alive()
    assert dates._languages == ("en", "de")
    assert parse_when("Freitag 18:00", LONDON, NOW).day == 27


@pytest.mark.parametrize(
    ("short", "full"),
    [
        ("next thurs 7pm", "next thursday 7pm"),
        ("thurs 7pm", "thursday 7pm"),
        ("thu 19:00", "thursday 19:00"),
        ("tues 6pm", "tuesday 6pm"),
        ("weds 18:00", "wednesday 18:00"),
        ("fri", "friday"),
        ("sat 10am", "saturday 10am"),
        ("sun 10am", "sunday 10am"),
        ("mon 9am", "monday 9am"),
        ("3 sept 10:00", "3 september 10:00"),
    ],
)
def test_weekday_and_month_abbreviations_are_read(short, full):
    # Issue 22 §4: "next thurs 7pm" was "I couldn't read … as a time".
    assert parse_when(short, LONDON, NOW) == parse_when(full, LONDON, NOW)


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("tue 2 dec 18:00", "2 Dec is a Wednesday: did you mean Wed 2 Dec or Tue 1 Dec?"),
        ("sat 6 dec 10am", "6 Dec is a Sunday: did you mean Sun 6 Dec or Sat 5 Dec?"),
        ("Friday 1st of December", "1 Dec is a Tuesday: did you mean Tue 1 Dec or Fri 4 Dec?"),
    ],
)
def test_a_weekday_that_disagrees_with_the_date_is_asked_about(text, question):
    with pytest.raises(DateError) as caught:
        parse_when(text, LONDON, NOW)
    assert str(caught.value) == question


def test_a_weekday_that_agrees_with_the_date_is_fine():
    assert parse_when("wed 2 dec 18:00", LONDON, NOW) == datetime(2026, 12, 2, 18, tzinfo=UTC)
    assert parse_when("Wednesday 2 December", LONDON, NOW).day == 2


def test_times_from_relative_phrases_are_on_the_minute():
    # Issue 22 §5: "in 5 minutes" at 03:00:26 kept the seconds (DTSTART…T030526).
    now = datetime(2026, 11, 23, 3, 0, 26, tzinfo=UTC)
    assert on_the_minute(parse_when("in 5 minutes", LONDON, now), now) == datetime(
        2026, 11, 23, 3, 5, tzinfo=UTC
    )
    assert on_the_minute(datetime(2026, 11, 23, 3, 5, 31, tzinfo=UTC)) == datetime(
        2026, 11, 23, 3, 6, tzinfo=UTC
    )
    # Never rounded back into the past: "in 10 seconds" at 03:00:10 is 03:01.
    late = datetime(2026, 11, 23, 3, 0, 10, tzinfo=UTC)
    assert on_the_minute(late + timedelta(seconds=10), late) == datetime(
        2026, 11, 23, 3, 1, tzinfo=UTC
    )


def test_minutes_are_compared_whole():
    start = datetime(2026, 11, 23, 3, 5, 26, tzinfo=UTC)
    assert same_minute_or_later(start, datetime(2026, 11, 23, 3, 5, 23, tzinfo=UTC))
    assert not same_minute_or_later(start, datetime(2026, 11, 23, 3, 4, 59, tzinfo=UTC))


def test_a_delta_a_few_seconds_short_is_rounded_not_cut():
    # A 4-minute reminder that ran 5 seconds late said "starts in 3 minutes".
    assert describe_delta(timedelta(minutes=3, seconds=55)) == "in 4 minutes"
    assert describe_delta(timedelta(minutes=59, seconds=50)) == "in 1 hour"
