"""Calendar feeds (RFC 5545) a calendar app subscribes to: a room's meetings, or one person's.

Each meeting's entry is the meetings plugin's own ``.ics`` (made with ``icalendar``: a UID that
never changes, a SEQUENCE raised on each change), so a subscribed calendar replaces the entry
when a meeting moves instead of adding a second. Here they are only put side by side in one
VCALENDAR, each time zone once. The merge copies their lines as they are (folding included):
parsing and re-serialising 200 meetings on every request would cost a second; copying costs
a millisecond.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

PRODID = "-//civicbot//public feed//EN"
CRLF = "\r\n"


def _escape(text: str) -> str:
    """A TEXT value (RFC 5545 §3.3.11)."""
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _components(data: bytes) -> list[tuple[str, list[str]]] | None:
    """The top-level components of one VCALENDAR as (name, lines), or None if it is not one."""
    lines = data.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
    if not lines or lines[0].strip().upper() != "BEGIN:VCALENDAR":
        return None
    found: list[tuple[str, list[str]]] = []
    depth, name = 0, ""
    current: list[str] = []
    for line in lines:
        upper = line.upper()
        if upper.startswith("BEGIN:"):
            depth += 1
            if depth == 2:
                name, current = upper[6:].strip(), []
        if depth >= 2:
            current.append(line)
        if upper.startswith("END:"):
            if depth == 2:
                if upper[4:].strip() != name:
                    return None
                found.append((name, current))
            depth -= 1
    return found if depth == 0 else None


def _tzid(lines: list[str]) -> str:
    return next((line[5:].strip() for line in lines if line.upper().startswith("TZID:")), "")


def merge_calendars(name: str, files: Iterable[bytes], refresh_minutes: int = 60) -> bytes:
    """One feed from many calendar files: every VEVENT, each VTIMEZONE once."""
    zones: dict[str, list[str]] = {}
    events: list[list[str]] = []
    for data in files:
        if not data:
            continue
        components = _components(data)
        if components is None:
            log.warning("left a calendar entry out of a feed: it does not parse")
            continue
        for kind, lines in components:
            if kind == "VTIMEZONE":
                zones.setdefault(_tzid(lines), lines)
            elif kind == "VEVENT":
                events.append(lines)
    out = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{_escape(name)[:200]}",
        # How often apps should look again (RFC 7986, and Apple's older name for it).
        f"REFRESH-INTERVAL;VALUE=DURATION:PT{refresh_minutes}M",
        f"X-PUBLISHED-TTL:PT{refresh_minutes}M",
    ]
    for lines in zones.values():
        out.extend(lines)
    for lines in events:
        out.extend(lines)
    out.append("END:VCALENDAR")
    return (CRLF.join(out) + CRLF).encode()
