"""Calendar feeds (RFC 5545) a calendar app subscribes to: a room's meetings, or one person's.

Each meeting's entry is the meetings plugin's own ``.ics`` (made with ``icalendar``: a UID that
never changes, a SEQUENCE raised on each change), so a subscribed calendar replaces the entry
when a meeting moves instead of adding a second. Here they are only put side by side in one
VCALENDAR, each time zone once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from icalendar import Calendar, Component

log = logging.getLogger(__name__)

PRODID = "-//civicbot//public feed//EN"


def merge_calendars(name: str, files: Iterable[bytes], refresh_minutes: int = 60) -> bytes:
    """One feed from many calendar files: every VEVENT, each VTIMEZONE once."""
    feed = Calendar()
    feed.add("prodid", PRODID)
    feed.add("version", "2.0")
    feed.add("calscale", "GREGORIAN")
    feed.add("method", "PUBLISH")
    feed.add("x-wr-calname", name)
    # How often apps should look again (Apple's and the draft standard's names).
    feed.add("x-published-ttl", f"PT{refresh_minutes}M")
    feed.add("refresh-interval", timedelta(minutes=refresh_minutes))
    zones: dict[str, Component] = {}
    events = []
    for data in files:
        if not data:
            continue
        try:
            calendar = Calendar.from_ical(data)
        except ValueError:
            log.warning("left a calendar entry out of a feed: it does not parse")
            continue
        for component in calendar.subcomponents:
            if component.name == "VTIMEZONE":
                zones.setdefault(str(component.get("tzid")), component)
            elif component.name == "VEVENT":
                events.append(component)
    for zone in zones.values():
        feed.add_component(zone)
    for event in events:
        feed.add_component(event)
    return feed.to_ical()
