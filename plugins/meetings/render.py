"""What the meetings plugin sends: native poll contents, the table, calendar files. Pure.

Availability is asked with one unstable MSC3381 poll per candidate time (Yes / If need be / No,
one answer), which Element Web/X and NeoChat render; meetings proposed before that have one
multi-select poll with one answer per slot, id ``"<slot number>"``, ``max_selections`` = every
slot, which are still counted (a tap means "yes" for that time).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from civicbot_plugins.meetings.ics import CalendarEntry, build_calendar, ics_filename, make_uid
from civicbot_plugins.meetings.models import Meeting, is_anonymous
from civicbot_plugins.meetings.service import SLOT_ANSWERS, Best, Table, format_slot

from civicbot.api import (
    POLL_DISCLOSED,
    POLL_END_TYPE,
    POLL_START_TYPE,
    POLL_TEXT_KEY,
    matrix_to,
    poll_end_content,
)

# The MSC3381 names, as this module has always called them.
DISCLOSED = POLL_DISCLOSED
END_TYPE = POLL_END_TYPE
START_TYPE = POLL_START_TYPE
TEXT_KEY = POLL_TEXT_KEY


def answer_ids(meeting: Meeting) -> list[str]:
    """The poll answer id of slot n is ``str(n)``."""
    return [str(n) for n in range(1, len(meeting.slots) + 1)]


def short_slot(meeting: Meeting, start: datetime, zone: ZoneInfo, now: datetime) -> str:
    return format_slot(start, meeting.duration, zone, now)


MAX_SLOT_POLLS = 5  # more times than this would fill the room with polls: typed answers only


def has_slot_polls(meeting: Meeting) -> bool:
    return len(meeting.slots) <= MAX_SLOT_POLLS


def slot_poll_content(
    meeting: Meeting, number: int, start: datetime, zone: ZoneInfo, now: datetime
) -> dict[str, Any]:
    """One candidate time's poll: Yes / If need be / No, one answer, which every client can
    take in one tap (Element Web sends one answer per tap even where more are allowed)."""
    when = short_slot(meeting, start, zone, now)
    question = f"{meeting.label} {meeting.title}, time {number}: {when}. Can you come?"
    answers = [{"id": answer_id, TEXT_KEY: text} for answer_id, text, _ in SLOT_ANSWERS]
    lines = [question, *(f"{n}. {a[TEXT_KEY]}" for n, a in enumerate(answers, start=1))]
    return {
        TEXT_KEY: "\n".join(lines),
        "body": "\n".join(lines),
        START_TYPE: {
            "kind": DISCLOSED,
            "max_selections": 1,
            "question": {TEXT_KEY: question},
            "answers": answers,
        },
    }


def end_content(meeting: Meeting, poll_event_id: str, why: str = "is fixed") -> dict[str, Any]:
    """``org.matrix.msc3381.poll.end`` of the availability poll, once it takes no answers."""
    return poll_end_content(poll_event_id, f"{meeting.label} {why}; this poll is closed.")


def person_name(person: str) -> str:
    """``@ann:example.org`` → ``ann``; a forgotten person shows as "someone"."""
    if is_anonymous(person):
        return "someone"
    return person.split(":", 1)[0].lstrip("@") or person


def _names(people: tuple[str, ...], limit: int) -> str:
    if not people or limit <= 0:
        return ""
    shown = [person_name(p) for p in people[:limit]]
    more = len(people) - len(shown)
    return ", ".join(shown) + (f" +{more}" if more > 0 else "")


def table_values(
    meeting: Meeting, table: Table, zone: ZoneInfo, now: datetime, names: int
) -> dict[str, Any]:
    """Values of the ``table`` template: ranked rows with counts and (some) names."""
    rows = [
        {
            "rank": rank,
            "number": row.number,
            "when": short_slot(meeting, row.start, zone, now),
            "yes": len(row.yes),
            "maybe": len(row.maybe),
            "yes_names": _names(row.yes, names),
            "maybe_names": _names(row.maybe, names),
        }
        for rank, row in enumerate(table.ranked, start=1)
    ]
    return {"meeting": meeting, "label": meeting.label, "rows": rows, "people": table.respondents}


def best_values(meeting: Meeting, best: Best, zone: ZoneInfo, now: datetime) -> dict[str, Any]:
    return {
        "number": best.slot.number,
        "yes": len(best.slot.yes),
        "maybe": len(best.slot.maybe),
        "tied_with": ", ".join(str(n) for n in best.tied_with),
        "when": short_slot(meeting, best.slot.start, zone, now),
    }


def calendar_file(
    meeting: Meeting,
    server: str,
    now: datetime,
    cancelled: bool = False,
    room_link: str | None = None,
) -> tuple[bytes, str]:
    """The .ics bytes and file name for a fixed (or cancelled) meeting; ``room_link`` is a
    matrix.to link to its room with ``via=`` servers (a bare one when not given)."""
    schedule = meeting.schedule()
    assert schedule is not None, "only a fixed meeting has a calendar file"
    entry = CalendarEntry(
        uid=make_uid(meeting.id, meeting.uid_token, server or "civicbot.invalid"),
        sequence=meeting.sequence,
        title=meeting.title,
        schedule=schedule,
        dtstamp=now,
        location=meeting.location,
        url=meeting.url,
        room_link=room_link or matrix_to(meeting.room_id),
        description=f"{meeting.label}, arranged in the Matrix room with civicbot.",
        cancelled=cancelled,
    )
    return build_calendar(entry), ics_filename(meeting.label, meeting.title)


def when_text(meeting: Meeting, zone: ZoneInfo, now: datetime) -> str:
    """A fixed meeting's time in ``zone``: its rule if it repeats, else its slot."""
    schedule = meeting.schedule()
    if schedule is None:
        return ""
    if schedule.recurrence is not None:
        nxt = schedule.next_occurrence(now)
        head = schedule.describe()
        if nxt is not None:
            head += f"; next {short_slot(meeting, nxt.start, zone, now)}"
        return head
    return short_slot(meeting, schedule.start, zone, now)


def place_text(meeting: Meeting) -> str:
    return meeting.location or meeting.url or ""
