"""When a fixed meeting happens: one time, or a rule like "every 2nd tuesday 19:00".

Occurrences are computed by ``dateutil.rrule`` on *local wall-clock* time in the room's zone and
only then turned into UTC, so a 19:00 meeting stays at 19:00 when the clocks change (its UTC
time moves by an hour instead). This is what RFC 5545 prescribes for a DTSTART with a TZID,
and what calendar apps will show from the .ics file, so reminders and calendars agree.

Single occurrences can be cancelled (EXDATE) or moved (RECURRENCE-ID); both are keyed by the
occurrence's *original* start in UTC, which never changes once the rule is set.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import rrule

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ICAL_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_ORDINALS = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 5: "5th", -1: "last"}
MAX_COUNT = 200  # "for N times": a bound that still covers four years of weekly meetings


class Frequency(StrEnum):
    WEEKLY = "weekly"
    MONTHLY = "monthly"  # on the nth weekday of the month ("every 2nd tuesday")


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A repeat rule. ``weekday`` is 0 for Monday; ``nth`` (1-5 or -1 for last) only for
    MONTHLY. ``until`` is a UTC moment (inclusive); at most one of ``until``/``count``."""

    freq: Frequency
    weekday: int
    interval: int = 1
    nth: int | None = None
    until: datetime | None = None
    count: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the database (see :meth:`from_json`)."""
        return {
            "freq": self.freq.value,
            "weekday": self.weekday,
            "interval": self.interval,
            "nth": self.nth,
            "until": self.until.isoformat() if self.until else None,
            "count": self.count,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Recurrence:
        until = data.get("until")
        return cls(
            freq=Frequency(data["freq"]),
            weekday=int(data["weekday"]),
            interval=int(data.get("interval") or 1),
            nth=data.get("nth"),
            until=datetime.fromisoformat(until).astimezone(UTC) if until else None,
            count=data.get("count"),
        )

    def ical_rule(self) -> dict[str, Any]:
        """The RRULE as a dict for ``icalendar.vRecur`` (UNTIL in UTC, as RFC 5545 §3.3.10
        requires when DTSTART has a TZID)."""
        day = _ICAL_DAYS[self.weekday]
        rule: dict[str, Any] = {"FREQ": self.freq.value.upper()}
        if self.interval != 1:
            rule["INTERVAL"] = self.interval
        rule["BYDAY"] = f"{self.nth}{day}" if self.freq is Frequency.MONTHLY else day
        if self.until is not None:
            rule["UNTIL"] = self.until.astimezone(UTC)
        if self.count is not None:
            rule["COUNT"] = self.count
        return rule

    def describe(self, zone: ZoneInfo) -> str:
        """``every 2nd Tuesday of the month``, ``every other Monday, 6 times``."""
        day = WEEKDAYS[self.weekday].capitalize()
        if self.freq is Frequency.MONTHLY:
            every = "every" if self.interval == 1 else f"every {self.interval} months on the"
            text = f"{every} {_ORDINALS.get(self.nth or 1, str(self.nth))} {day}"
            text += " of the month" if self.interval == 1 else ""
        elif self.interval == 1:
            text = f"every {day}"
        elif self.interval == 2:
            text = f"every other {day}"
        else:
            text = f"every {self.interval} weeks on {day}"
        if self.count is not None:
            text += f", {self.count} times"
        if self.until is not None:
            local = self.until.astimezone(zone)
            text += f", until {local:%a} {local.day} {local:%b} {local.year}"
        return text


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One time a meeting happens. ``original`` identifies it (the RECURRENCE-ID); ``start``
    is when it really happens (different when moved)."""

    original: datetime
    start: datetime
    end: datetime

    @property
    def moved(self) -> bool:
        return self.start != self.original


@dataclass(frozen=True)
class Schedule:
    """A fixed meeting's times: first ``start`` (UTC), how long, in which zone, and how it
    repeats. ``cancelled`` and ``moved`` hold original starts (UTC) of changed occurrences."""

    start: datetime
    duration: timedelta
    zone: ZoneInfo
    recurrence: Recurrence | None = None
    cancelled: frozenset[datetime] = frozenset()
    moved: Mapping[datetime, datetime] = field(default_factory=dict)

    def original_starts(self, after: datetime | None = None) -> Iterator[datetime]:
        """Every start the rule produces (UTC, ignoring cancellations and moves), in order,
        from the first one after ``after`` (all when None). Endless for a rule without an end:
        take what you need."""
        if self.recurrence is None:
            if after is None or self.start > after:
                yield self.start
            return
        local_start = self.start.astimezone(self.zone).replace(tzinfo=None)
        rule = _rrule(self.recurrence, local_start, self.zone)
        # Start the walk a day early in local time: "after" is UTC, the rule runs on wall time.
        cursor = None if after is None else after.astimezone(self.zone).replace(tzinfo=None)
        walk = rule if cursor is None else rule.xafter(cursor - timedelta(days=1), inc=True)
        for naive in walk:
            moment = naive.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
            if after is None or moment > after:
                yield moment

    def occurrences(
        self, after: datetime | None = None, before: datetime | None = None, limit: int = 1000
    ) -> list[Occurrence]:
        """Occurrences that are not cancelled, with moves applied, whose *start* is after
        ``after`` and before ``before``, sorted by start; at most ``limit``. A moved
        occurrence counts by its new time, wherever its original time lies."""

        def inside(moment: datetime) -> bool:
            return (after is None or moment > after) and (before is None or moment < before)

        found = [
            Occurrence(original, new, new + self.duration)
            for original, new in self.moved.items()
            if original not in self.cancelled and inside(new)
        ]
        unmoved = 0
        for original in self.original_starts(after):
            if (before is not None and original >= before) or unmoved >= limit:
                break  # originals come in order: the rest are later still
            if original in self.cancelled or original in self.moved:
                continue
            found.append(Occurrence(original, original, original + self.duration))
            unmoved += 1
        found.sort(key=lambda o: o.start)
        return found[:limit]

    def describe(self) -> str:
        """``every 2nd Tuesday of the month at 19:00 Europe/London`` (for a repeating meeting;
        a one-off one is shown with :func:`~civicbot_plugins.meetings.service.format_slot`)."""
        local = self.start.astimezone(self.zone)
        rule = self.recurrence.describe(self.zone) if self.recurrence else "once"
        head, _, tail = rule.partition(", ")
        at = f"{head} at {local:%H:%M} {self.zone.key}"
        return f"{at}, {tail}" if tail else at

    def next_occurrence(self, now: datetime) -> Occurrence | None:
        """The first occurrence that has not started by ``now``."""
        found = self.occurrences(after=now, limit=1)
        return found[0] if found else None

    def original_on(self, day: date, limit: int = 5000) -> datetime | None:
        """The original start (UTC) of the occurrence on local ``day`` (what a resident types
        in ``!meet cancel M-3 2026-12-08``), or None when the rule has none that day."""
        for index, original in enumerate(self.original_starts()):
            local = original.astimezone(self.zone).date()
            if local == day:
                return original
            if local > day or index >= limit:
                return None
        return None

    @property
    def last_end(self) -> datetime | None:
        """When the last occurrence ends, or None for a rule without an end."""
        if self.recurrence is not None and self.recurrence.until is None:
            if self.recurrence.count is None:
                return None
        starts = [self.moved.get(s, s) for s in self.original_starts() if s not in self.cancelled]
        return max(starts) + self.duration if starts else None


def _rrule(rule: Recurrence, local_start: datetime, zone: ZoneInfo) -> rrule.rrule:
    weekday = rrule.weekday(rule.weekday)
    until = None
    if rule.until is not None:
        # dateutil compares UNTIL with the naive local starts it generates.
        until = rule.until.astimezone(zone).replace(tzinfo=None)
    if rule.freq is Frequency.MONTHLY:
        return rrule.rrule(
            rrule.MONTHLY,
            dtstart=local_start,
            interval=rule.interval,
            byweekday=weekday(rule.nth or 1),
            until=until,
            count=rule.count,
        )
    return rrule.rrule(
        rrule.WEEKLY,
        dtstart=local_start,
        interval=rule.interval,
        byweekday=weekday,
        until=until,
        count=rule.count,
    )


def first_start(
    rule: Recurrence, hour: int, minute: int, zone: ZoneInfo, now: datetime
) -> datetime | None:
    """The first time (UTC) after ``now`` that ``rule`` at ``hour:minute`` local produces."""
    local_now = now.astimezone(zone).replace(tzinfo=None)
    # Anchor the rule at today's wall time so weekly intervals count from this week.
    anchor = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    anchor -= timedelta(days=1)
    unbounded = Recurrence(rule.freq, rule.weekday, rule.interval, rule.nth, rule.until, None)
    for naive in _rrule(unbounded, anchor, zone):
        moment = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if moment > now:
            return moment
        if naive > local_now + timedelta(days=400):
            break
    return None
