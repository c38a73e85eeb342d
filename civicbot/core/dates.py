"""Dates and durations typed by residents: "in 3 days", "friday 18:00", "2 Dec 6pm", "48h".

Everything here is pure and synchronous except :func:`resolve_when`, which runs the parse in a
worker thread so a slow parse never stalls the bot. dateparser reads only the languages in
``bot.languages`` (:func:`use_languages`): left to itself it tries all ~200 on text it cannot
read, which took seconds on the first such text after a start. :func:`warm_up` loads those
languages in the background at start, so no reply waits on that either. Times come back
timezone-aware in UTC; :func:`format_when` echoes them in the room's zone the way residents
should see them ("Tue 2 Dec 18:00 Europe/London").

    closes = await resolve_when("friday 18:00", ctx)      # in a handler
    await ctx.reply(f"Closes {format_when(closes, await ctx.timezone())}")
"""

from __future__ import annotations

import asyncio
import re
import threading
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from civicbot.core.commands import Converter, UsageError

if TYPE_CHECKING:
    from civicbot.core.context import Context

# Examples that are never in the past, whenever they are read.
EXAMPLES = "'in 3 days', 'friday 18:00' or 'next tuesday 6pm'"
DEFAULT_TIME = time(18, 0)  # a date given without a time means the early evening of that day
MAX_AHEAD = timedelta(days=3 * 365)
MAX_WHEN_LENGTH = 100
# Longest duration worth computing: beyond it "in 99999999999 days" would overflow timedelta.
MAX_DURATION = timedelta(days=100 * 365)

_UNITS: dict[str, timedelta] = {
    "s": timedelta(seconds=1),
    "sec": timedelta(seconds=1),
    "secs": timedelta(seconds=1),
    "second": timedelta(seconds=1),
    "seconds": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "min": timedelta(minutes=1),
    "mins": timedelta(minutes=1),
    "minute": timedelta(minutes=1),
    "minutes": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "hr": timedelta(hours=1),
    "hrs": timedelta(hours=1),
    "hour": timedelta(hours=1),
    "hours": timedelta(hours=1),
    "d": timedelta(days=1),
    "day": timedelta(days=1),
    "days": timedelta(days=1),
    "w": timedelta(weeks=1),
    "wk": timedelta(weeks=1),
    "wks": timedelta(weeks=1),
    "week": timedelta(weeks=1),
    "weeks": timedelta(weeks=1),
}
_WORD_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
_DURATION_PART = re.compile(r"(\d+(?:[.,]\d+)?|an?|one|two|three|four|five|six)\s*([a-z]+)")
_EXPLICIT_TIME = re.compile(
    r"\d{1,2}[:.h]\d{2}|\b\d{1,2}\s*(?:am|pm|h)\b|"
    r"\b(?:noon|midday|midnight|tonight|morning|afternoon|evening)\b",
    re.I,
)
# Zones whose residents write 2/12 for the 12th of February; everyone else means 2 December.
_MONTH_FIRST_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "America/Detroit",
    "America/Indiana",
    "America/Kentucky",
    "Pacific/Honolulu",
    "US/",
)


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)  # fmt: skip
# Short forms people type on phones that dateparser does not read ("thurs", "weds", "sept").
_SHORT_NAMES = {
    "mon": "monday", "tue": "tuesday", "tues": "tuesday", "wed": "wednesday",
    "weds": "wednesday", "thu": "thursday", "thur": "thursday", "thurs": "thursday",
    "fri": "friday", "sat": "saturday", "sun": "sunday",
    "jan": "january", "feb": "february", "mar": "march", "apr": "april", "jun": "june",
    "jul": "july", "aug": "august", "sep": "september", "sept": "september",
    "oct": "october", "nov": "november", "dec": "december",
}  # fmt: skip
_SHORT_NAME = re.compile(r"\b(" + "|".join(_SHORT_NAMES) + r")\b\.?", re.I)
_WEEKDAY_NAME = re.compile(r"\b(" + "|".join(_WEEKDAYS) + r")\b", re.I)
_MONTH_NAME = "(?:" + "|".join(_MONTHS) + ")"
# A day of the month is named: "2 dec", "2nd of december", "december 2", "2/12", "2-12".
_DAY_OF_MONTH = re.compile(
    rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH_NAME}\b|\b{_MONTH_NAME}\s+\d{{1,2}}\b|"
    r"\b\d{1,2}[/-]\d{1,2}\b",
    re.I,
)


def expand_short_names(text: str) -> str:
    """``"next thurs 7pm"`` → ``"next thursday 7pm"``: weekday and month abbreviations in full."""
    return _SHORT_NAME.sub(lambda m: _SHORT_NAMES[m.group(1).lower()], text)


def _check_weekday(text: str, when: datetime, zone: ZoneInfo, now: datetime) -> None:
    """A weekday named next to a date it is not ("tue 2 dec" when 2 Dec is a Wednesday) is a
    question, not something to guess: ask which of the two was meant."""
    named = _WEEKDAY_NAME.search(text)
    if named is None or not _DAY_OF_MONTH.search(text):
        return
    local = when.astimezone(zone)
    wanted = _WEEKDAYS.index(named.group(1).lower())
    if local.weekday() == wanted:
        return
    shift = (wanted - local.weekday() + 3) % 7 - 3  # the nearest day with the named weekday
    other = local + timedelta(days=shift)
    year = "" if now.astimezone(zone).year == local.year else f" {local.year}"
    other_year = "" if now.astimezone(zone).year == other.year else f" {other.year}"
    raise DateError(
        f"{local.day} {local:%b}{year} is a {local:%A}: did you mean "
        f"{local:%a} {local.day} {local:%b}{year} or {other:%a} {other.day} {other:%b}{other_year}?"
    )


# What dateparser may read dates in; set from ``bot.languages`` at start (the default there too).
_languages: tuple[str, ...] = ("en",)


def use_languages(languages: list[str] | tuple[str, ...]) -> None:
    """Read dates only in these dateparser language codes (``["en"]``, ``["en", "fr"]``)."""
    global _languages
    _languages = tuple(languages)


def warm_up(languages: list[str] | tuple[str, ...] | None = None) -> threading.Thread:
    """Use ``languages`` (if given) and load them in a background thread: the first parse loads
    dateparser's data for each, and a resident's reply should not be the one that waits."""
    if languages is not None:
        use_languages(languages)

    def load() -> None:
        zone = ZoneInfo("UTC")
        now = datetime.now(UTC)
        for text in ("friday 18:00", "not a date at all"):  # a success and a failure path
            try:
                _dateparse(text, zone, now, DEFAULT_TIME)
            except (DateError, ValueError, OverflowError):
                pass

    thread = threading.Thread(target=load, name="dateparser-warm-up", daemon=True)
    thread.start()
    return thread


class DateError(ValueError):
    """A date or duration could not be understood; the message says what to type instead."""


def parse_duration(text: str) -> timedelta | None:
    """``"3 days"``, ``"in 48h"``, ``"1 week 2 days"``, ``"an hour"`` → a timedelta, else None.
    Raises :class:`DateError` for a duration longer than :data:`MAX_DURATION`."""
    cleaned = text.strip().lower().removeprefix("in ").replace(" and ", " ").strip()
    if not cleaned:
        return None
    total = timedelta(0)
    position = 0
    for match in _DURATION_PART.finditer(cleaned):
        if cleaned[position : match.start()].strip(" ,"):
            return None
        amount_text, unit = match.groups()
        if unit not in _UNITS:
            return None
        amount = _WORD_NUMBERS.get(amount_text)
        value = float(amount_text.replace(",", ".")) if amount is None else float(amount)
        # Compare before multiplying: a huge (or infinite) float overflows timedelta.
        seconds = _UNITS[unit].total_seconds() * value
        if not seconds <= MAX_DURATION.total_seconds() - total.total_seconds():
            raise DateError(f"{_quoted(text)} is far too long; give a shorter time.")
        total += _UNITS[unit] * value
        position = match.end()
    if position == 0 or cleaned[position:].strip(" ,"):
        return None
    return total


def has_explicit_time(text: str) -> bool:
    """True when ``text`` names a time of day ("18:00", "6pm", "noon"), not only a day."""
    return bool(_EXPLICIT_TIME.search(text))


def parse_when(
    text: str,
    zone: ZoneInfo,
    now: datetime,
    *,
    default_time: time = DEFAULT_TIME,
    allow_past: bool = False,
) -> datetime:
    """Read a moment typed by a resident, in ``zone``, relative to ``now``; return it in UTC.

    A duration ("in 3 days", "48h") counts from ``now`` exactly. A day without a time ("friday",
    "1 Dec") means ``default_time`` on that day. Raises :class:`DateError` with a friendly message
    for text that is not a date, or a time in the past unless ``allow_past``."""
    raw = " ".join(text.split())
    if not raw:
        raise DateError(f"Tell me when, for example {EXAMPLES}.")
    quoted = _quoted(raw)
    if len(raw) > MAX_WHEN_LENGTH:  # no date is this long; dateparser would chew for seconds
        raise DateError(f"I couldn't read {quoted} as a time. Try {EXAMPLES}.")
    now = now.astimezone(UTC)
    too_far = DateError(f"{quoted} is more than three years away; pick a nearer date.")
    try:
        delta = parse_duration(raw)
    except DateError:
        raise too_far from None
    try:
        if delta is not None:
            if delta > MAX_AHEAD:  # checked first: now + a century may not be a datetime
                raise too_far
            when = now + delta
        else:
            text = expand_short_names(raw)
            when = _dateparse(text, zone, now, default_time)
            _check_weekday(text, when, zone, now)
    except DateError:
        raise
    except (OverflowError, ValueError):  # a date at the edge of what datetime holds
        raise DateError(f"I couldn't read {quoted} as a time. Try {EXAMPLES}.") from None
    if not allow_past and when <= now:
        raise DateError(
            f"{quoted} is in the past ({format_when(when, zone, now)}). "
            f"Give a time in the future, for example {EXAMPLES}."
        )
    if when - now > MAX_AHEAD:
        raise too_far
    return when


# dateparser is not safe to call from two threads at once (its language loading and caches:
# scrapinghub/dateparser issues 441 and 813), and dates are read in worker threads, beside the
# warm-up: one parse at a time.
_DATEPARSER = threading.Lock()


def _dateparse(raw: str, zone: ZoneInfo, now: datetime, default_time: time) -> datetime:
    import dateparser  # imported lazily: it takes a moment to load its language data

    local_now = now.astimezone(zone).replace(tzinfo=None)
    settings: dict[str, Any] = {
        "PREFER_DATES_FROM": "future",
        "TIMEZONE": zone.key,
        "RETURN_AS_TIMEZONE_AWARE": False,
        "RELATIVE_BASE": local_now,
        "DATE_ORDER": "MDY" if zone.key.startswith(_MONTH_FIRST_ZONES) else "DMY",
    }
    try:
        with _DATEPARSER:
            parsed = dateparser.parse(raw, languages=list(_languages), settings=settings)
    except Exception:  # dateparser raises assorted errors on odd input
        parsed = None
    if parsed is None:
        raise DateError(f"I couldn't read {_quoted(raw)} as a time. Try {EXAMPLES}.")
    if not has_explicit_time(raw):
        parsed = datetime.combine(parsed.date(), default_time)
    return _localize(parsed, zone).astimezone(UTC)


def _quoted(text: str, limit: int = 40) -> str:
    """``'text'`` for a message, shortened: whatever was typed is echoed, not pasted back whole."""
    text = " ".join(text.split())
    return f"'{text}'" if len(text) <= limit else f"'{text[: limit - 1]}…'"


def _localize(naive: datetime, zone: ZoneInfo) -> datetime:
    """Attach ``zone``. A wall time skipped by a clock change (01:30 on the spring-forward night)
    takes the offset from before the change, so it lands after the gap (02:30), as PEP 495
    specifies for ``fold=0``; a repeated autumn hour means its first occurrence."""
    return naive.replace(tzinfo=zone, fold=0)


def format_when(when: datetime, zone: ZoneInfo, now: datetime | None = None) -> str:
    """``Tue 2 Dec 18:00 Europe/London``; the year is shown when it is not the current one."""
    local = when.astimezone(zone)
    year = "" if now is None or now.astimezone(zone).year == local.year else f" {local.year}"
    return f"{local:%a} {local.day} {local:%b}{year} {local:%H:%M} {zone.key}"


def on_the_minute(when: datetime, now: datetime | None = None) -> datetime:
    """``when`` rounded to the nearest whole minute, as a time people agree on should be: "in 5
    minutes" typed at 03:00:26 means 03:05, not 03:05:26 (which a calendar file and every
    later comparison would carry). Never rounded back to ``now`` or before it."""
    rounded = (when + timedelta(seconds=30)).replace(second=0, microsecond=0)
    if now is not None and rounded <= now:
        rounded = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return rounded


def same_minute_or_later(when: datetime, now: datetime) -> bool:
    """True once the clock has reached ``when``'s minute: at 03:05:23 a meeting at 03:05 has
    started, whatever seconds either carries."""
    return when.replace(second=0, microsecond=0) <= now.replace(second=0, microsecond=0)


def describe_delta(delta: timedelta) -> str:
    """A rough, friendly distance: ``in 3 days``, ``in 5 hours``, ``12 minutes ago``, ``now``."""
    seconds = delta.total_seconds()
    size = abs(seconds)
    if size < 60:
        return "now"
    if round(size / 60) < 60:
        # Rounded, not cut: a reminder four minutes ahead that runs a few seconds late still
        # says "in 4 minutes".
        count, unit = max(1, round(size / 60)), "minute"
    elif size < 48 * 3600:
        count, unit = round(size / 3600), "hour"
    else:
        count, unit = round(size / 86400), "day"
    label = f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{label} ago" if seconds < 0 else f"in {label}"


async def resolve_when(text: str, ctx: Context, **options: Any) -> datetime:
    """:func:`parse_when` in the room's time zone at the bot's clock; a bad date becomes a
    :class:`~civicbot.core.commands.CommandError`-style reply through :class:`UsageError`."""
    zone = await ctx.timezone()
    try:
        return await asyncio.to_thread(parse_when, text, zone, ctx.now, **options)
    except DateError as exc:
        raise UsageError(str(exc)) from None


class When(str, Converter):
    """Command argument: the rest of the input as a moment. Resolve it in the handler, where the
    room's time zone is known: ``closes = await when.resolve(ctx)``."""

    metavar = "when"
    greedy = True

    @classmethod
    def convert(cls, raw: str, ctx: Context) -> When:
        text = " ".join(raw.split())
        if not text:
            raise UsageError(f"Tell me when, for example {EXAMPLES}")
        return cls(text)

    async def resolve(self, ctx: Context, **options: Any) -> datetime:
        return await resolve_when(str(self), ctx, **options)


class Duration(Converter):
    """Command argument: one word like ``3d``, ``48h`` or ``90m`` (quote longer ones)."""

    metavar = "duration"

    @classmethod
    def convert(cls, raw: str, ctx: Context) -> timedelta:
        try:
            delta = parse_duration(raw)
        except DateError as exc:
            raise UsageError(str(exc)) from None
        if delta is None or delta <= timedelta(0):
            raise UsageError(f"{_quoted(raw)} is not a duration; write it like 3d, 48h or 90m")
        return delta
