"""Values for the list, digest and personal-digest templates. No Matrix; reads the store."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from civicbot_plugins.meetings import render
from civicbot_plugins.meetings.models import Meeting
from civicbot_plugins.meetings.records import RecordStore
from civicbot_plugins.meetings.service import tally
from civicbot_plugins.meetings.store import MeetingStore

from civicbot.api import PublicMeeting, PublicSection, format_when, matrix_to

WEEK = timedelta(days=7)


def list_row(meeting: Meeting, zone: ZoneInfo, now: datetime, room: str = "") -> dict[str, Any]:
    """One line of ``!meetings``."""
    return {
        "label": meeting.label,
        "title": meeting.title,
        "when": render.when_text(meeting, zone, now),
        "slots": len(meeting.slots),
        "first": format_when(meeting.slots[0], zone, now) if meeting.slots else "",
        "decide_by": format_when(meeting.decide_by, zone, now) if meeting.decide_by else "",
        "room": room,
    }


def soonest(meeting: Meeting, now: datetime) -> datetime:
    """When a meeting next matters, to list meetings in time order: the next occurrence of a
    fixed one, the first proposed time of one still finding a time."""
    schedule = meeting.schedule()
    if schedule is not None:
        upcoming = schedule.next_occurrence(now) if schedule.recurrence is not None else None
        return upcoming.start if upcoming is not None else schedule.start
    return min(meeting.slots) if meeting.slots else now


def link(room_id: str, event_id: str | None) -> str:
    """A link to an event the bot posted in the meeting's room, or "" when it has none (a
    meeting fixed before it was announced, minutes recorded before they were posted)."""
    return matrix_to(room_id, event_id) if event_id else ""


def upcoming(
    meetings: list[Meeting], zone: ZoneInfo, after: datetime, before: datetime
) -> list[dict[str, Any]]:
    """Occurrences of fixed meetings between ``after`` and ``before``, soonest first."""
    rows: list[tuple[datetime, dict[str, Any]]] = []
    for meeting in meetings:
        schedule = meeting.schedule()
        if schedule is None:
            continue
        for occurrence in schedule.occurrences(after=after, before=before, limit=20):
            when = render.short_slot(meeting, occurrence.start, zone, after)
            row = {"label": meeting.label, "title": meeting.title, "when": when,
                   "link": link(meeting.room_id, meeting.announce_event_id)}  # fmt: skip
            rows.append((occurrence.start, row))
    rows.sort(key=lambda pair: pair[0])
    return [row for _, row in rows]


async def digest_values(
    store: MeetingStore,
    records: RecordStore,
    room_id: str,
    since: datetime,
    until: datetime,
    zone: ZoneInfo,
) -> dict[str, Any] | None:
    """Next week's meetings, open scheduling questions and minutes posted in the period."""
    coming = upcoming(await store.fixed_in(room_id, until), zone, until, until + WEEK)
    open_rows = []
    for meeting in await store.proposed_in(room_id):
        people = tally(meeting.slots, await store.ballots(meeting.id)).respondents
        open_rows.append({
            "label": meeting.label,
            "title": meeting.title,
            "people": people,
            "link": link(room_id, meeting.poll_event_id or meeting.table_event_id),
        })  # fmt: skip
    minutes = []
    for item in await records.minutes_in_room_between(room_id, since, until):
        meeting = await store.get(item.meeting_id)
        title = meeting.title if meeting else ""
        minutes.append({"label": f"M-{item.meeting_id}", "title": title, "text": item.text,
                        "link": link(room_id, item.event_id)})  # fmt: skip
    if not (coming or open_rows or minutes):
        return None
    return {"upcoming": coming, "open": open_rows, "minutes": minutes}


async def personal_rows(
    store: MeetingStore, records: RecordStore, ctx: Any, user_id: str, until: datetime
) -> list[dict[str, Any]]:
    """Next week's meetings ``user_id`` said they are going to, in their zone (``!tz``, else
    the first meeting's room's)."""
    going = await store.going_to(user_id, until)
    if not going:
        return []
    name = await records.user_zone(user_id)
    zone = ZoneInfo(name) if name else await ctx.timezone(going[0].room_id)
    return upcoming(going, zone, until, until + WEEK)


# The public page lists a meeting's next few dates; its calendar entry holds them all.
PUBLIC_DATES = 5
CALENDARS_KEPT = 5_000


class Calendars:
    """Calendar files by (meeting, SEQUENCE, last change): building one with its time zone
    takes milliseconds, and a room's page and feed would build every meeting's on every
    request. Stamped with the meeting's last change, so a meeting gives the same bytes (and
    the feed the same ETag) until it changes."""

    def __init__(self, server: str):
        self.server = server
        self._files: dict[tuple[int, int, datetime], bytes] = {}

    def of(self, meeting: Meeting) -> bytes:
        key = (meeting.id, meeting.sequence, meeting.changed_at)
        found = self._files.get(key)
        if found is None:
            found = render.calendar_file(meeting, self.server, meeting.changed_at)[0]
            if len(self._files) >= CALENDARS_KEPT:
                self._files.pop(next(iter(self._files)))
            self._files[key] = found
        return found


def public_meeting(meeting: Meeting, calendars: Calendars, now: datetime) -> PublicMeeting | None:
    """A fixed meeting for the room's public page and feed, or None once it has no dates to
    come. Its calendar entry is the very file posted in the room (same UID and SEQUENCE),
    stamped with its last change so the feed only changes when the meeting does."""
    schedule = meeting.schedule()
    if schedule is None:
        return None
    starts = tuple(o.start for o in schedule.occurrences(after=now, limit=PUBLIC_DATES))
    calendar = calendars.of(meeting)
    return PublicMeeting(
        label=meeting.label,
        title=meeting.title,
        starts=starts[:PUBLIC_DATES],
        duration_minutes=int(meeting.duration.total_seconds() // 60),
        timezone=meeting.timezone,
        place=meeting.location or "",
        url=meeting.url or "",
        event_id=meeting.announce_event_id,
        moved=meeting.sequence > 0,
        calendar=calendar,
    )


async def public_section(
    store: MeetingStore, room_id: str, calendars: Calendars, now: datetime
) -> PublicSection | None:
    """The room's fixed meetings that have not ended (nothing of who answered or is going)."""
    found = [public_meeting(m, calendars, now) for m in await store.fixed_in(room_id, now)]
    meetings = tuple(m for m in found if m is not None and m.starts)
    return PublicSection(meetings=meetings) if meetings else None


async def personal_calendar(
    store: MeetingStore, person: str, calendars: Calendars, now: datetime
) -> list[bytes]:
    """The calendar files of every meeting ``person`` said they are going to, in any room."""
    return [calendars.of(m) for m in await store.going_to(person, now) if m.schedule() is not None]
