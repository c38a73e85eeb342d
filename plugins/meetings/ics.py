"""Calendar files (RFC 5545) for a fixed meeting, built with the ``icalendar`` library.

What calendar apps need to import and later *update* the same entry:

- a UID that never changes for the meeting, and a SEQUENCE that grows with every change, so a
  new file replaces the old entry instead of adding a second one (RFC 5545 §3.8.7.4);
- DTSTART/DTEND with a TZID and the matching VTIMEZONE (generated from zoneinfo by icalendar),
  so a repeating 19:00 meeting stays at 19:00 across DST; a meeting in UTC is written in UTC;
- one RRULE for a repeating meeting, EXDATE for a cancelled occurrence, and an extra VEVENT with
  RECURRENCE-ID for a moved one (same UID and SEQUENCE);
- METHOD:PUBLISH, with STATUS:CONFIRMED, or STATUS:CANCELLED when the whole meeting is called
  off. iTIP (RFC 5546 §3.2.2, §3.2.5) requires an ORGANIZER with a calendar address in
  METHOD:REQUEST and METHOD:CANCEL, and the apps answer a REQUEST by mailing that organiser an
  accept/decline the bot would never read. A Matrix room has no such address, so the file is
  a plain published calendar entry (§3.2.1): Google, Apple and Outlook import it, and a later
  file with the same UID and a higher SEQUENCE updates or cancels the same entry. RSVPs stay
  in the room (``!rsvp``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from civicbot_plugins.meetings.recurrence import Schedule
from icalendar import Calendar, Event, vRecur

PRODID = "-//civicbot//meetings//EN"
PUBLISH = "PUBLISH"
_YEAR = timedelta(days=366)
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Zulu", "Zulu", "GMT", "Etc/GMT"})


@dataclass(frozen=True)
class CalendarEntry:
    """Everything the .ics file says about a meeting.

    ``uid`` is made once when the meeting is created (see :func:`make_uid`) and stored;
    ``sequence`` is the meeting's change counter from the store; ``dtstamp`` is when this file
    is made. ``room_link`` (``https://matrix.to/#/!room:server``) goes into DESCRIPTION so
    people can find their way back to the room. ``organizer`` is an optional cal-address URI."""

    uid: str
    sequence: int
    title: str
    schedule: Schedule
    dtstamp: datetime
    location: str | None = None
    url: str | None = None
    room_link: str | None = None
    description: str = ""
    cancelled: bool = False
    organizer: str | None = None


def make_uid(meeting_id: int, token: str, domain: str = "civicbot.invalid") -> str:
    """A globally unique, stable UID (RFC 5545 §3.8.4.7): ``m3-<token>@<domain>``. ``token``
    is random and stored with the meeting, so two bots never make the same UID."""
    return f"m{meeting_id}-{token}@{domain}"


def _zone(zone: ZoneInfo) -> tzinfo:
    # A UTC meeting is written as "…Z" with no VTIMEZONE: the form every importer accepts.
    return UTC if zone.key in _UTC_NAMES else zone


def _local(moment: datetime, zone: tzinfo) -> datetime:
    return moment.astimezone(zone).replace(microsecond=0)


def _description(entry: CalendarEntry) -> str:
    lines = [entry.description.strip()] if entry.description.strip() else []
    if entry.url:
        lines.append(f"Join: {entry.url}")
    if entry.room_link:
        lines.append(f"Matrix room: {entry.room_link}")
    return "\n\n".join(lines)


def _event(entry: CalendarEntry, zone: tzinfo, start: datetime, end: datetime) -> Event:
    event = Event()
    event.add("uid", entry.uid)
    event.add("dtstamp", entry.dtstamp.astimezone(UTC).replace(microsecond=0))
    event.add("sequence", entry.sequence)
    event.add("summary", entry.title)
    event.add("dtstart", _local(start, zone))
    event.add("dtend", _local(end, zone))
    if entry.location:
        event.add("location", entry.location)
    elif entry.url:
        event.add("location", entry.url)  # shown where people look for "where"
    if entry.url:
        event.add("url", entry.url)
    description = _description(entry)
    if description:
        event.add("description", description)
    if entry.organizer:
        event.add("organizer", entry.organizer)
    event.add("status", "CANCELLED" if entry.cancelled else "CONFIRMED")
    return event


def build_calendar(entry: CalendarEntry) -> bytes:
    """The .ics file for ``entry`` (METHOD:PUBLISH; STATUS:CANCELLED when cancelled)."""
    schedule = entry.schedule
    zone = _zone(schedule.zone)
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", PUBLISH)
    master = _event(entry, zone, schedule.start, schedule.start + schedule.duration)
    if schedule.recurrence is not None:
        master.add("rrule", vRecur(schedule.recurrence.ical_rule()))
        if schedule.cancelled:
            master.add("exdate", [_local(s, zone) for s in sorted(schedule.cancelled)])
    calendar.add_component(master)
    if schedule.recurrence is not None and not entry.cancelled:
        for original, new_start in sorted(schedule.moved.items()):
            if original in schedule.cancelled:
                continue
            override = _event(entry, zone, new_start, new_start + schedule.duration)
            override.add("recurrence-id", _local(original, zone))
            calendar.add_component(override)
    if zone is not UTC:
        # Transitions from a year before the meeting to a year after its end (twenty years for
        # an endless rule) keep the file small; the default spans 1970-2038.
        ends = schedule.last_end or schedule.start + timedelta(days=20 * 365)
        calendar.add_missing_timezones(
            first_date=(schedule.start - _YEAR).date(), last_date=(ends + _YEAR).date()
        )
    return calendar.to_ical()


def ics_filename(label: str, title: str) -> str:
    """``M-3-litter-pick-planning.ics``: readable, safe on every file system."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-")
    return f"{label}-{slug}.ics" if slug else f"{label}.ics"
