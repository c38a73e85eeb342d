"""Reading a ``!meet`` proposal. Pure: no Matrix, no database.

A proposal is a title, then parts split on new lines or on `` | ``::

    !meet Litter pick planning | next tuesday 18:00 | next saturday 10am | for 90 minutes
    !meet Residents' meeting | every 2nd tuesday 19:00 | until 2027-06-30 | at Church Hall
    !meet Garden rota | every week on monday 18:30 | for 6 times | at https://meet.jit.si/garden

Parts that start with ``for``, ``at``, ``decide by``, ``every`` or ``until`` are settings; every
other part is a candidate time, read by :func:`civicbot.core.dates.parse_when` in the room's zone.

"every 2nd tuesday" means the second Tuesday of each month (how groups schedule a monthly
meeting); "every other tuesday" or "every 2 weeks on tuesday" means fortnightly. The reply
echoes the rule in words, so a misreading is seen at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from civicbot_plugins.meetings.recurrence import (
    MAX_COUNT,
    WEEKDAYS,
    Frequency,
    Recurrence,
    first_start,
)

from civicbot.api import DateError, format_when, on_the_minute, parse_duration, parse_when

MAX_SLOTS = 20
MAX_TITLE = 200
MAX_PLACE = 300
DEFAULT_DURATION = timedelta(hours=1)
MIN_DURATION = timedelta(minutes=5)
MAX_DURATION = timedelta(hours=24)
EXAMPLE = "!meet Litter pick planning | next tuesday 18:00 | next saturday 10am | for 90 minutes"
REPEAT_EXAMPLES = (
    "'every 2nd tuesday 19:00', 'every week on monday 18:30' or 'every other friday 10am'"
)

_DAY = (
    r"(?P<{name}>mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday)?|thu(?:r(?:s(?:day)?)?)?|"
    r"fri(?:day)?|sat(?:urday)?|sun(?:day)?)s?"
)
_NTH = r"(?P<{name}>1st|2nd|3rd|4th|5th|first|second|third|fourth|fifth|last)"
_NTH_VALUES = {
    "1st": 1, "first": 1, "2nd": 2, "second": 2, "3rd": 3, "third": 3,
    "4th": 4, "fourth": 4, "5th": 5, "fifth": 5, "last": -1,
}  # fmt: skip
_TIME = r"(?:at\s+)?(?P<time>\d{1,2}[:.]\d{2}(?:\s*[ap]\.?m\.?)?|\d{1,2}\s*[ap]\.?m\.?|noon|midday)"
_EVERY = re.compile(
    r"^every\s+(?:"
    + _NTH.format(name="nth")
    + r"\s+"
    + _DAY.format(name="mday")
    + r"(?:\s+(?:of|in)\s+(?:the|each|every)\s+month)?"
    + r"|month\s+on\s+the\s+"
    + _NTH.format(name="nth2")
    + r"\s+"
    + _DAY.format(name="mday2")
    + r"|(?:(?P<other>other)|(?P<weeks>\d{1,2})\s+weeks?|week)\s+(?:on\s+)?"
    + _DAY.format(name="wday")
    + r"|"
    + _DAY.format(name="day")
    + r")\s+"
    + _TIME
    + r"(?:\s+until\s+(?P<until>.+?)|\s+for\s+(?P<count>\d{1,4})\s+times?)?\s*$",
    re.I,
)
_FOR_TIMES = re.compile(r"^for\s+(?P<count>\d{1,4})\s+(?:times?|meetings?|occurrences?)$", re.I)
_FOR = re.compile(r"^for\s+(?P<duration>.+)$", re.I)
_AT = re.compile(r"^(?:at|where|place|location)\s*:?\s+(?P<place>.+)$", re.I)
_DECIDE = re.compile(r"^(?:decide\s+by|decide|deadline|answer\s+by)\s*:?\s+(?P<when>.+)$", re.I)
_UNTIL = re.compile(r"^until\s+(?P<until>.+)$", re.I)
_BARE_TIME = re.compile(r"^\d{1,2}(?:[:.]\d{2})?\s*(?:[ap]\.?m\.?)?$", re.I)
_LINK = re.compile(r"^https?://\S+$", re.I)
_LIST_MARKER = re.compile(r"^(?:\d{1,2}[.)]|[-*•])\s+")
_UNTIL_TIME = time(23, 59)  # "until 30 june" includes a meeting on the 30th


_T = TypeVar("_T")


class MeetingInputError(ValueError):
    """The proposal could not be read; the message says what to type instead."""


@dataclass(frozen=True)
class Proposal:
    """A parsed ``!meet``. ``slots`` are candidate starts in UTC, sorted and distinct (slot
    number n is ``slots[n - 1]``). A repeating meeting has exactly one slot, its first
    occurrence, and is meant to be fixed at once."""

    title: str
    slots: tuple[datetime, ...]
    duration: timedelta
    zone: ZoneInfo
    location: str | None = None
    url: str | None = None
    decide_by: datetime | None = None
    recurrence: Recurrence | None = None


def split_parts(raw: str) -> list[str]:
    """Parts on new lines (blank lines skipped), else on ``|``."""
    raw = raw.strip()
    if "\n" in raw:
        return [line.strip() for line in raw.splitlines() if line.strip()]
    return [part.strip() for part in raw.split("|") if part.strip()]


def parse_proposal(raw: str, zone: ZoneInfo, now: datetime) -> Proposal:
    """Read ``!meet`` input (without the ``!meet``) in the room's ``zone`` at ``now``.

    Raises :class:`MeetingInputError` with a message a resident can act on. Slow on unreadable
    text (dateparser tries every language), so call it from a worker thread."""
    parts = split_parts(raw)
    if not parts:
        raise MeetingInputError(f"Give the meeting a title and some times, for example: {EXAMPLE}")
    title, rest = parts[0], parts[1:]
    if len(title) > MAX_TITLE:
        raise MeetingInputError(f"Keep the title under {MAX_TITLE} characters.")
    duration: timedelta | None = None
    place: str | None = None
    decide_text: str | None = None
    until_text: str | None = None
    count: int | None = None
    repeat_text: str | None = None
    slot_texts: list[str] = []
    for part in rest:
        times = _FOR_TIMES.match(part)
        if times:
            count = _once(count, int(times["count"]), "how many times")
            continue
        length = _FOR.match(part)
        if length:
            duration = _once(duration, _duration(length["duration"]), "two lengths")
            continue
        at = _AT.match(part)
        if at:
            place = _once(place, at["place"].strip(), "two places")
            continue
        decide = _DECIDE.match(part)
        if decide:
            decide_text = _once(decide_text, decide["when"], "two deadlines")
            continue
        until = _UNTIL.match(part)
        if until:
            until_text = _once(until_text, until["until"], "two end dates")
            continue
        if part.lower().startswith("every "):
            repeat_text = _once(repeat_text, part, "two repeat rules")
            continue
        slot_texts.append(_LIST_MARKER.sub("", part, count=1).strip() or part)
    location, url = _place(place)
    length_or_default = duration or DEFAULT_DURATION
    if repeat_text is not None:
        if slot_texts:
            raise MeetingInputError(
                "A repeating meeting takes its time from the rule; leave out the other times "
                f"(you gave {_quoted(slot_texts[0])})."
            )
        if decide_text is not None:
            raise MeetingInputError(
                "A repeating meeting is fixed straight away; leave out 'decide by'."
            )
        recurrence, start = _recurrence(repeat_text, until_text, count, zone, now)
        return Proposal(
            title, (start,), length_or_default, zone, location, url, recurrence=recurrence
        )
    if until_text is not None or count is not None:
        raise MeetingInputError(
            f"'until' and 'for N times' are for meetings that repeat, like {REPEAT_EXAMPLES}."
        )
    slots = _slots(slot_texts, zone, now)
    decide_by = None
    if decide_text is not None:
        decide_by = _when(decide_text, zone, now, "The deadline")
        if decide_by >= slots[0]:
            raise MeetingInputError(
                f"The deadline to decide ({format_when(decide_by, zone, now)}) is not before the "
                f"first time ({format_when(slots[0], zone, now)}); give an earlier 'decide by'."
            )
    return Proposal(title, slots, length_or_default, zone, location, url, decide_by=decide_by)


def _once(previous: _T | None, value: _T, what: str) -> _T:
    if previous is not None:
        raise MeetingInputError(f"You gave {what}; keep one.")
    return value


def _duration(text: str) -> timedelta:
    try:
        delta = parse_duration(text)
    except DateError as exc:
        raise MeetingInputError(str(exc)) from None
    if delta is None:
        raise MeetingInputError(
            f"I couldn't read {_quoted(text)} as a length; write it like 'for 90 minutes' "
            "or 'for 2 hours'."
        )
    if not MIN_DURATION <= delta <= MAX_DURATION:
        raise MeetingInputError("A meeting lasts between 5 minutes and 24 hours; say 'for 1 hour'.")
    return delta


def _place(place: str | None) -> tuple[str | None, str | None]:
    if place is None:
        return None, None
    if _BARE_TIME.match(place):
        raise MeetingInputError(
            f"'at' is for the place; put {_quoted(place)} with its day instead, like "
            "'next tuesday 18:00'."
        )
    if len(place) > MAX_PLACE:
        raise MeetingInputError(f"Keep the place under {MAX_PLACE} characters.")
    if _LINK.match(place):
        return None, place
    if place.lower().startswith(("http:", "https:", "www.")):
        raise MeetingInputError(
            "That link looks broken; give it whole, like 'at https://meet.jit.si/our-group'."
        )
    return place, None


def _slots(texts: list[str], zone: ZoneInfo, now: datetime) -> tuple[datetime, ...]:
    if not texts:
        raise MeetingInputError(
            f"Give at least one time after the title, one per line or split by |, for example: "
            f"{EXAMPLE}"
        )
    if len(texts) > MAX_SLOTS:
        raise MeetingInputError(
            f"You gave {len(texts)} times; at most {MAX_SLOTS} fit in one meeting poll. "
            "Leave some out."
        )
    parsed: list[datetime] = []
    for number, text in enumerate(texts, start=1):
        label = f"Time {number}" if len(texts) > 1 else "The time"
        parsed.append(_when(text, zone, now, label))
    seen: dict[datetime, int] = {}
    for number, start in enumerate(parsed, start=1):
        if start in seen:
            raise MeetingInputError(
                f"Times {seen[start]} and {number} are both {format_when(start, zone, now)}; "
                "give each time once."
            )
        seen[start] = number
    return tuple(sorted(parsed))


def _when(text: str, zone: ZoneInfo, now: datetime, label: str) -> datetime:
    try:
        return on_the_minute(parse_when(text, zone, now), now)
    except DateError as exc:
        raise MeetingInputError(f"{label}: {exc}") from None


def _recurrence(
    text: str, until_text: str | None, count: int | None, zone: ZoneInfo, now: datetime
) -> tuple[Recurrence, datetime]:
    match = _EVERY.match(" ".join(text.split()))
    if match is None:
        raise MeetingInputError(
            f"I couldn't read {_quoted(text)} as a repeat with a time. Try {REPEAT_EXAMPLES}."
        )
    if match["until"]:
        until_text = _once(until_text, match["until"], "two end dates")
    if match["count"]:
        count = _once(count, int(match["count"]), "how many times")
    if until_text is not None and count is not None:
        raise MeetingInputError("Say either 'until <date>' or 'for N times', not both.")
    if count is not None and not 1 <= count <= MAX_COUNT:
        raise MeetingInputError(f"'for N times' takes a number from 1 to {MAX_COUNT}.")
    nth_text = match["nth"] or match["nth2"]
    day_text = match["mday"] or match["mday2"] or match["wday"] or match["day"]
    weekday = next(i for i, name in enumerate(WEEKDAYS) if name.startswith(day_text[:3].lower()))
    hour, minute = _clock(match["time"])
    if nth_text:
        rule = Recurrence(Frequency.MONTHLY, weekday, nth=_NTH_VALUES[nth_text.lower()])
    else:
        interval = 2 if match["other"] else int(match["weeks"] or 1)
        if not 1 <= interval <= 52:
            raise MeetingInputError("Repeat every 1 to 52 weeks.")
        rule = Recurrence(Frequency.WEEKLY, weekday, interval=interval)
    until = None
    if until_text is not None:
        until = _until(until_text, zone, now)
    rule = Recurrence(rule.freq, rule.weekday, rule.interval, rule.nth, until, count)
    start = first_start(rule, hour, minute, zone, now)
    if start is None:
        raise MeetingInputError(
            f"{_quoted(text)} has no date before the end you gave; give a later 'until'."
        )
    return rule, start


def _until(text: str, zone: ZoneInfo, now: datetime) -> datetime:
    try:
        return parse_when(text, zone, now, default_time=_UNTIL_TIME)
    except DateError as exc:
        raise MeetingInputError(f"The end date: {exc}") from None


def _clock(text: str) -> tuple[int, int]:
    cleaned = text.lower().replace(".", ":").replace(" ", "")
    if cleaned in ("noon", "midday"):
        return 12, 0
    suffix = ""
    if cleaned.endswith(("am", "pm", "a:m:", "p:m:", "a:m", "p:m")):
        suffix = "pm" if "p" in cleaned else "am"
        cleaned = re.sub(r"[ap]:?m:?$", "", cleaned)
    hour_text, _, minute_text = cleaned.partition(":")
    hour, minute = int(hour_text), int(minute_text or 0)
    if suffix:
        if not 1 <= hour <= 12:
            raise MeetingInputError(f"{_quoted(text)} is not a time; write it like 19:00 or 7pm.")
        hour = hour % 12 + (12 if suffix == "pm" else 0)
    if hour > 23 or minute > 59:
        raise MeetingInputError(f"{_quoted(text)} is not a time; write it like 19:00 or 7pm.")
    return hour, minute


def _quoted(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return f"'{text}'" if len(text) <= limit else f"'{text[: limit - 1]}…'"
