"""SQL for the reminders ledger, minutes and personal time zones (``meetings_`` tables)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from civicbot_plugins.meetings.models import Minutes, from_iso, maybe_iso, to_iso

from civicbot.api import Database


class RecordStore:
    """Repository over ``meetings_reminders``, ``meetings_minutes`` and ``meetings_user_tz``."""

    def __init__(self, db: Database):
        self.db = db

    # -- reminders ledger (exactly once) -------------------------------------------------------
    async def claim_reminder(
        self, key: str, meeting_id: int, due_at: datetime, delivery: str, now: datetime
    ) -> bool:
        """Take a reminder: True for the one caller that should send (or skip) it, which
        promises it to the outbox in the same transaction; the outbox's ``on_done`` calls
        :meth:`finish_reminder`."""
        changed = await self.db.execute_rowcount(
            "INSERT INTO meetings_reminders (key, meeting_id, due_at, delivery, claimed_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
            (key, meeting_id, to_iso(due_at), delivery, to_iso(now)),
        )
        return changed > 0

    async def finish_reminder(self, key: str, event_id: str) -> None:
        await self.db.execute(
            "UPDATE meetings_reminders SET event_id = ? WHERE key = ?", (event_id, key)
        )

    async def unfinished_reminders(self) -> list[tuple[str, int, str]]:
        """(key, meeting id, delivery) of reminders claimed to send but not marked sent."""
        rows = await self.db.fetchall(
            "SELECT key, meeting_id, delivery FROM meetings_reminders"
            " WHERE event_id IS NULL AND delivery != 'skip' ORDER BY due_at"
        )
        return [(row[0], row[1], row[2]) for row in rows]

    async def reminder_keys(self, meeting_ids: Iterable[int] | None = None) -> set[str]:
        """Keys already claimed (sent, being sent or skipped), for all meetings or some."""
        if meeting_ids is None:
            rows = await self.db.fetchall("SELECT key FROM meetings_reminders")
            return {row[0] for row in rows}
        ids = list(meeting_ids)
        keys: set[str] = set()
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            marks = ", ".join("?" * len(chunk))
            rows = await self.db.fetchall(
                f"SELECT key FROM meetings_reminders WHERE meeting_id IN ({marks})", chunk
            )
            keys.update(row[0] for row in rows)
        return keys

    # -- minutes -------------------------------------------------------------------------------
    async def add_minutes(
        self,
        meeting_id: int,
        author: str,
        text: str,
        now: datetime,
        occurrence: datetime | None = None,
        event_id: str | None = None,
    ) -> int:
        return await self.db.execute(
            "INSERT INTO meetings_minutes (meeting_id, occurrence, author, text, posted_at,"
            " event_id) VALUES (?, ?, ?, ?, ?, ?)",
            (meeting_id, to_iso(occurrence) if occurrence else None, author, text,
             to_iso(now), event_id),
        )  # fmt: skip

    async def minutes(self, meeting_id: int) -> list[Minutes]:
        return await self._minutes("m.meeting_id = ?", (meeting_id,))

    async def minutes_in_room_between(
        self, room_id: str, since: datetime, until: datetime
    ) -> list[Minutes]:
        """Minutes posted in ``room_id`` in [since, until) (the digest section)."""
        return await self._minutes(
            "g.room_id = ? AND m.posted_at >= ? AND m.posted_at < ?",
            (room_id, to_iso(since), to_iso(until)),
        )

    async def _minutes(self, where: str, params: Sequence[Any]) -> list[Minutes]:
        rows = await self.db.fetchall(
            "SELECT m.* FROM meetings_minutes m JOIN meetings_meetings g ON g.id = m.meeting_id"
            f" WHERE {where} ORDER BY m.posted_at, m.id",
            params,
        )
        return [
            Minutes(r["id"], r["meeting_id"], maybe_iso(r["occurrence"]), r["author"], r["text"],
                    from_iso(r["posted_at"]), r["event_id"])
            for r in rows
        ]  # fmt: skip

    # -- personal time zones -------------------------------------------------------------------
    async def set_user_zone(self, person: str, zone: str, now: datetime) -> None:
        await self.db.execute(
            "INSERT INTO meetings_user_tz (person, timezone, set_at) VALUES (?, ?, ?)"
            " ON CONFLICT(person) DO UPDATE SET timezone = excluded.timezone,"
            " set_at = excluded.set_at",
            (person, zone, to_iso(now)),
        )

    async def user_zone(self, person: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT timezone FROM meetings_user_tz WHERE person = ?", (person,)
        )
        return None if value is None else str(value)

    async def clear_user_zone(self, person: str) -> bool:
        changed = await self.db.execute_rowcount(
            "DELETE FROM meetings_user_tz WHERE person = ?", (person,)
        )
        return changed > 0
