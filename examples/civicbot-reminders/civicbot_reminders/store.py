"""The reminders table: SQL only, rows returned as dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from civicbot.api import Database

# Ordered; each runs once, in its own transaction. Tables must start with "reminders_".
MIGRATIONS = [
    """
    CREATE TABLE reminders_reminders (
        id INTEGER PRIMARY KEY,
        source_event TEXT NOT NULL UNIQUE,  -- a replayed !remind cannot store it twice
        room_id TEXT NOT NULL,
        author TEXT NOT NULL,
        text TEXT NOT NULL,
        due_at INTEGER NOT NULL,            -- UTC seconds
        thread_root TEXT
    )
    """,
    # A second migration, as a plugin gains features: when it was sent (NULL: not yet).
    """
    ALTER TABLE reminders_reminders ADD COLUMN sent_at INTEGER;
    CREATE INDEX reminders_due ON reminders_reminders(sent_at, due_at)
    """,
]


@dataclass(frozen=True)
class Reminder:
    id: int
    room_id: str
    source_event: str  # the !remind message: the reminder replies to it
    author: str
    text: str
    due_at: datetime
    thread_root: str | None
    sent_at: datetime | None

    @property
    def label(self) -> str:
        return f"R-{self.id}"


def _utc(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class ReminderStore:
    def __init__(self, db: Database):
        self.db = db

    async def add(
        self,
        source_event: str,
        room_id: str,
        author: str,
        text: str,
        due: datetime,
        thread: str | None,
    ) -> Reminder:
        await self.db.execute(
            "INSERT OR IGNORE INTO reminders_reminders"
            " (source_event, room_id, author, text, due_at, thread_root) VALUES (?, ?, ?, ?, ?, ?)",
            (source_event, room_id, author, text, int(due.timestamp()), thread),
        )
        found = await self._one("source_event = ?", source_event)
        assert found is not None
        return found

    async def get(self, reminder_id: int) -> Reminder | None:
        return await self._one("id = ?", reminder_id)

    async def waiting(self, room_id: str | None = None) -> list[Reminder]:
        if room_id is None:
            return await self._all("sent_at IS NULL ORDER BY due_at, id")
        return await self._all("sent_at IS NULL AND room_id = ? ORDER BY due_at, id", room_id)

    async def mark_sent(self, reminder_id: int, at: datetime) -> None:
        await self.db.execute(
            "UPDATE reminders_reminders SET sent_at = ? WHERE id = ?",
            (int(at.timestamp()), reminder_id),
        )

    async def delete(self, reminder_id: int) -> None:
        await self.db.execute("DELETE FROM reminders_reminders WHERE id = ?", (reminder_id,))

    async def sent_between(self, room_id: str, since: datetime, until: datetime) -> int:
        value = await self.db.fetchval(
            "SELECT COUNT(*) FROM reminders_reminders WHERE room_id = ? AND sent_at >= ?"
            " AND sent_at < ?",
            (room_id, int(since.timestamp()), int(until.timestamp())),
        )
        return int(value or 0)

    async def by_author(self, user_id: str) -> list[Reminder]:
        return await self._all("author = ? ORDER BY id", user_id)

    async def forget(self, user_id: str) -> int:
        return await self.db.execute_rowcount(
            "DELETE FROM reminders_reminders WHERE author = ?", (user_id,)
        )

    async def _one(self, where: str, *params: object) -> Reminder | None:
        found = await self._all(where, *params)
        return found[0] if found else None

    async def _all(self, where: str, *params: object) -> list[Reminder]:
        rows = await self.db.fetchall(
            "SELECT id, room_id, source_event, author, text, due_at, thread_root, sent_at"
            f" FROM reminders_reminders WHERE {where}",
            params,
        )
        return [
            Reminder(
                r["id"],
                r["room_id"],
                r["source_event"],
                r["author"],
                r["text"],
                datetime.fromtimestamp(r["due_at"], UTC),
                r["thread_root"],
                _utc(r["sent_at"]),
            )
            for r in rows
        ]
