"""The ``meetings_`` tables and the dataclasses the store returns.

Times are stored as UTC text (``2026-12-08T19:00:00Z``) beside the IANA zone they were typed
in: the zone decides the wall-clock time of every occurrence of a repeating meeting.

People appear in ``meetings_availability``, ``meetings_rsvps``, ``meetings_minutes`` (author),
``meetings_meetings`` (organiser) and ``meetings_user_tz``. ``!forget me`` replaces the name in
the first four with a random stand-in (so counts stay) and deletes the last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from civicbot_plugins.meetings.recurrence import Recurrence, Schedule

PROPOSED = "proposed"  # collecting availability
FIXED = "fixed"  # a time is set (repeating meetings start here)
CANCELLED = "cancelled"
ANONYMOUS = "anon:"  # prefix of a forgotten person's stand-in


def to_iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> datetime:
    # fromisoformat reads the "…Z" to_iso writes for a tenth of strptime's cost (a room's
    # public page reads every meeting's times).
    return datetime.fromisoformat(text).astimezone(UTC)


def maybe_iso(text: str | None) -> datetime | None:
    return from_iso(text) if text else None


def is_anonymous(person: str) -> bool:
    return person.startswith(ANONYMOUS)


@dataclass(frozen=True)
class Meeting:
    """A meeting as stored. ``start`` is set once fixed (the first occurrence of a repeating
    one); ``slots`` are the proposed times (slot n is ``slots[n - 1]``). ``cancelled`` and
    ``moved`` are single occurrences changed by ``!meet cancel/move M-3 <date>``, keyed by
    original start. ``changed_at`` is when it was fixed or last changed: reminders due before
    then are not sent (see :func:`~civicbot_plugins.meetings.reminders.pending_reminders`)."""

    id: int
    room_id: str
    source_event_id: str
    organiser: str
    title: str
    duration: timedelta
    timezone: str
    location: str | None
    url: str | None
    decide_by: datetime | None
    state: str
    start: datetime | None
    fixed_slot: int | None
    fixed_by: str | None
    recurrence: Recurrence | None
    uid_token: str
    sequence: int
    created_at: datetime
    changed_at: datetime
    thread_root: str | None
    table_event_id: str | None
    poll_event_id: str | None
    announce_event_id: str | None
    slots: tuple[datetime, ...] = ()
    cancelled: frozenset[datetime] = frozenset()
    moved: dict[datetime, datetime] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The id residents type: ``M-3``."""
        return f"M-{self.id}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def schedule(self) -> Schedule | None:
        """The fixed meeting's :class:`Schedule`, or None while it is only proposed."""
        if self.start is None:
            return None
        return Schedule(
            self.start, self.duration, self.zone, self.recurrence, self.cancelled, self.moved
        )

    @classmethod
    def from_row(cls, row: Any) -> Meeting:
        recurrence = row["recurrence"]
        return cls(
            id=row["id"],
            room_id=row["room_id"],
            source_event_id=row["source_event_id"],
            organiser=row["organiser"],
            title=row["title"],
            duration=timedelta(seconds=row["duration_s"]),
            timezone=row["timezone"],
            location=row["location"],
            url=row["url"],
            decide_by=maybe_iso(row["decide_by"]),
            state=row["state"],
            start=maybe_iso(row["start"]),
            fixed_slot=row["fixed_slot"],
            fixed_by=row["fixed_by"],
            recurrence=Recurrence.from_json(json.loads(recurrence)) if recurrence else None,
            uid_token=row["uid_token"],
            sequence=row["sequence"],
            created_at=from_iso(row["created_at"]),
            changed_at=from_iso(row["changed_at"]),
            thread_root=row["thread_root"],
            table_event_id=row["table_event_id"],
            poll_event_id=row["poll_event_id"],
            announce_event_id=row["announce_event_id"],
        )


@dataclass(frozen=True, slots=True)
class Minutes:
    """What was decided, as typed with ``!minutes M-3 …``."""

    id: int
    meeting_id: int
    occurrence: datetime | None
    author: str
    text: str
    posted_at: datetime
    event_id: str | None
