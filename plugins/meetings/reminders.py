"""Which reminders are due, and what to do with one the bot missed while it was down. Pure.

Every reminder has a stable key built from the meeting, the occurrence (its original start and
its real start) and the offset. The store records a key when the reminder is sent, so it is
sent exactly once across restarts; a move changes the real start and so the key, and the new
time gets its own reminders.

After downtime a reminder whose time has passed is still sent, with a note that it is late, as
long as the meeting has not started; once it has, the reminder is dropped. When several
reminders of one occurrence were missed (the 24-hour and the 1-hour one), only the latest is
sent: "tomorrow" arriving after "in one hour" would only confuse.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from civicbot_plugins.meetings.recurrence import Occurrence, Schedule

from civicbot.api import describe_delta

DEFAULT_OFFSETS = (timedelta(hours=24), timedelta(hours=1))
# A reminder sent up to this long after its time is simply on time (scheduler jitter, a short
# restart); later than this it carries a note.
ON_TIME_GRACE = timedelta(minutes=5)
# How far ahead reminders are armed at start; later ones are armed as occurrences come closer.
ARM_HORIZON = timedelta(days=35)


class Delivery(StrEnum):
    ON_TIME = "on_time"
    LATE = "late"  # send, with a note that it is late
    SKIP = "skip"  # record as done without sending (meeting started, or a later one supersedes)


@dataclass(frozen=True, slots=True)
class Reminder:
    """One reminder of one occurrence of a meeting."""

    key: str
    meeting_id: int
    occurrence: Occurrence
    offset: timedelta
    due_at: datetime


def reminder_key(meeting_id: int, occurrence: Occurrence, offset: timedelta) -> str:
    """``M3/20261208T190000Z/20261208T190000Z/-1440m``: stable for as long as the occurrence
    keeps its time; changes when it moves (so the new time is reminded of too)."""
    seconds = int(offset.total_seconds())
    # Minutes when they are whole (the usual 24 h and 1 h), seconds for short test offsets.
    amount = f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"
    return (
        f"M{meeting_id}/{occurrence.original:%Y%m%dT%H%M%SZ}/"
        f"{occurrence.start:%Y%m%dT%H%M%SZ}/-{amount}"
    )


def parse_reminder_key(key: str, duration: timedelta) -> tuple[Occurrence, timedelta] | None:
    """The occurrence and offset a :func:`reminder_key` names (to resend one claimed before a
    crash), or None for a key in another shape."""
    try:
        _, original, start, amount = key.split("/")
        value = int(amount[1:-1])
        offset = timedelta(minutes=value) if amount.endswith("m") else timedelta(seconds=value)
        begin = datetime.strptime(start, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        first = datetime.strptime(original, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return Occurrence(first, begin, begin + duration), offset


def reminders_between(
    meeting_id: int,
    schedule: Schedule,
    offsets: Sequence[timedelta],
    after: datetime,
    before: datetime,
) -> list[Reminder]:
    """Reminders of occurrences that start after ``after``, due before ``before``, by due
    time (then by start, so the keys come out in a stable order)."""
    longest = max(offsets, default=timedelta(0))
    found = [
        Reminder(reminder_key(meeting_id, occ, offset), meeting_id, occ, offset, occ.start - offset)
        for occ in schedule.occurrences(after=after, before=before + longest)
        for offset in offsets
        if occ.start - offset < before
    ]
    found.sort(key=lambda r: (r.due_at, r.occurrence.start, r.key))
    return found


def pending_reminders(
    meeting_id: int,
    schedule: Schedule,
    offsets: Sequence[timedelta],
    now: datetime,
    sent: Container[str],
    since: datetime | None = None,
    horizon: timedelta = ARM_HORIZON,
) -> list[Reminder]:
    """What to arm at start (or after a change): reminders not in ``sent``, of occurrences not
    yet started, due by ``now + horizon`` (overdue ones included: see :func:`plan_due`).

    ``since`` is when the meeting was fixed or last changed: a reminder that was due before
    then is left out, since the announcement itself told people (fixing on Monday evening a
    meeting for Tuesday noon sends no "24 hours to go")."""
    return [
        r
        for r in reminders_between(meeting_id, schedule, offsets, now, now + horizon)
        if r.key not in sent and (since is None or r.due_at >= since)
    ]


def delivery(reminder: Reminder, now: datetime, grace: timedelta = ON_TIME_GRACE) -> Delivery:
    """On time, late (with a note) or skipped, for a reminder being handled at ``now``."""
    if now >= reminder.occurrence.start:
        return Delivery.SKIP
    if now - reminder.due_at <= grace:
        return Delivery.ON_TIME
    return Delivery.LATE


def plan_due(
    reminders: Iterable[Reminder], now: datetime, grace: timedelta = ON_TIME_GRACE
) -> list[tuple[Reminder, Delivery]]:
    """Decide every reminder due by ``now``: :func:`delivery` for each, except that of several
    due reminders of one occurrence only the latest is sent and the others are SKIP. Those
    not yet due are left out. Every returned key should be recorded as done, sent or not."""
    due = [r for r in reminders if r.due_at <= now]
    latest: dict[tuple[int, datetime, datetime], Reminder] = {}
    for reminder in due:
        occ = reminder.occurrence
        slot = (reminder.meeting_id, occ.original, occ.start)
        if slot not in latest or latest[slot].due_at < reminder.due_at:
            latest[slot] = reminder
    plan: list[tuple[Reminder, Delivery]] = []
    for reminder in sorted(due, key=lambda r: (r.due_at, r.key)):
        occ = reminder.occurrence
        if latest[(reminder.meeting_id, occ.original, occ.start)] is not reminder:
            plan.append((reminder, Delivery.SKIP))
        else:
            plan.append((reminder, delivery(reminder, now, grace)))
    return plan


def late_note(reminder: Reminder, now: datetime) -> str:
    """The note on a late reminder: ``Sorry, this reminder is late (the bot was offline);
    the meeting starts in 40 minutes.``"""
    return (
        "Sorry, this reminder is late (the bot was offline); the meeting starts "
        f"{describe_delta(reminder.occurrence.start - now)}."
    )
