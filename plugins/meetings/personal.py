"""SQL for ``!mydata`` and ``!forget me`` over the ``meetings_`` tables.

Forgetting keeps the counts: a person's availability and RSVP rows in each meeting move to one
stand-in for that meeting (so their ballot still counts once in the table), minutes they wrote
and meetings they organised keep their text under a stand-in, and their personal time zone is
deleted. The stand-in is random unless the caller supplies one (the polls plugin, for example,
derives it from a keyed hash, so a later answer by the same person replaces the earlier one
instead of counting twice).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from civicbot_plugins.meetings.models import ANONYMOUS

from civicbot.api import Database

StandIn = Callable[[int, str], str]  # (meeting id, person) -> stand-in name


def random_stand_in(meeting_id: int, person: str) -> str:
    return ANONYMOUS + secrets.token_hex(8)


async def has_person(db: Database, meeting_id: int, person: str) -> bool:
    """Whether ``person`` (a name or a stand-in) has answered in this meeting."""
    found = await db.fetchval(
        "SELECT 1 FROM meetings_availability WHERE meeting_id = ? AND person = ?"
        " UNION ALL SELECT 1 FROM meetings_rsvps WHERE meeting_id = ? AND person = ? LIMIT 1",
        (meeting_id, person, meeting_id, person),
    )
    return found is not None


async def export_person(db: Database, person: str) -> dict[str, Any]:
    """Everything the meetings tables hold about ``person``, as JSON-ready data."""
    availability = await db.fetchall(
        "SELECT a.meeting_id, m.room_id, m.title, a.slot, s.start, a.answer, a.via, a.ts"
        " FROM meetings_availability a JOIN meetings_meetings m ON m.id = a.meeting_id"
        " LEFT JOIN meetings_slots s ON s.meeting_id = a.meeting_id AND s.number = a.slot"
        " WHERE a.person = ? ORDER BY a.meeting_id, a.slot",
        (person,),
    )
    rsvps = await db.fetchall(
        "SELECT r.meeting_id, m.room_id, m.title, r.status, r.ts FROM meetings_rsvps r"
        " JOIN meetings_meetings m ON m.id = r.meeting_id WHERE r.person = ?"
        " ORDER BY r.meeting_id",
        (person,),
    )
    organised = await db.fetchall(
        "SELECT id, room_id, title, state, start, created_at FROM meetings_meetings"
        " WHERE organiser = ? OR fixed_by = ? ORDER BY id",
        (person, person),
    )
    minutes = await db.fetchall(
        "SELECT n.meeting_id, m.room_id, n.text, n.posted_at FROM meetings_minutes n"
        " JOIN meetings_meetings m ON m.id = n.meeting_id WHERE n.author = ? ORDER BY n.id",
        (person,),
    )
    zone = await db.fetchone(
        "SELECT timezone, set_at FROM meetings_user_tz WHERE person = ?", (person,)
    )
    return {
        "time_zone": dict(zone) if zone is not None else None,
        "availability": [
            {"meeting": f"M-{r[0]}", "room": r[1], "title": r[2], "slot": r[3], "start": r[4],
             "answer": r[5], "via": r[6], "answered_at_ms": r[7]}
            for r in availability
        ],
        "rsvps": [
            {"meeting": f"M-{r[0]}", "room": r[1], "title": r[2], "status": r[3],
             "answered_at_ms": r[4]}
            for r in rsvps
        ],
        "organised": [
            {"meeting": f"M-{r[0]}", "room": r[1], "title": r[2], "state": r[3], "start": r[4],
             "created_at": r[5]}
            for r in organised
        ],
        "minutes": [
            {"meeting": f"M-{r[0]}", "room": r[1], "text": r[2], "posted_at": r[3]}
            for r in minutes
        ],
    }  # fmt: skip


async def forget_person(
    db: Database, person: str, stand_in: StandIn = random_stand_in
) -> tuple[int, int]:
    """Remove ``person``'s name from the meetings tables; returns (rows removed, rows
    anonymised). Counts (who could come, how many are going) are unchanged."""
    removed = anonymised = 0
    async with db.transaction():
        meeting_ids = [
            row[0]
            for row in await db.fetchall(
                "SELECT meeting_id FROM meetings_availability WHERE person = ?"
                " UNION SELECT meeting_id FROM meetings_rsvps WHERE person = ?",
                (person, person),
            )
        ]
        for meeting_id in meeting_ids:
            name = stand_in(meeting_id, person)
            for table in ("meetings_availability", "meetings_rsvps"):
                anonymised += await db.execute_rowcount(
                    f"UPDATE {table} SET person = ? WHERE meeting_id = ? AND person = ?",
                    (name, meeting_id, person),
                )
        for row in await db.fetchall(
            "SELECT id, meeting_id FROM meetings_minutes WHERE author = ?", (person,)
        ):
            anonymised += await db.execute_rowcount(
                "UPDATE meetings_minutes SET author = ? WHERE id = ?",
                (stand_in(row[1], person), row[0]),
            )
        for column in ("organiser", "fixed_by"):
            for row in await db.fetchall(
                f"SELECT id FROM meetings_meetings WHERE {column} = ?", (person,)
            ):
                anonymised += await db.execute_rowcount(
                    f"UPDATE meetings_meetings SET {column} = ? WHERE id = ?",
                    (stand_in(row[0], person), row[0]),
                )
        removed += await db.execute_rowcount(
            "DELETE FROM meetings_user_tz WHERE person = ?", (person,)
        )
    return removed, anonymised
