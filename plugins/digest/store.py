"""The digest's tables: the week's counts, who subscribed, and which digests were claimed.

Counts are numbers only (messages and thread replies per room and hour, and a keyed hash per
member to tell a first join from a name change): no message text and no Matrix id is stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from civicbot.api import Database

KEEP_COUNTS_S = 35 * 24 * 3600  # five weeks: a late digest still finds its week


@dataclass(frozen=True)
class Claim:
    room_id: str
    week: str
    due_at: int
    late: bool
    event_id: str | None


class DigestStore:
    def __init__(self, db: Database):
        self.db = db

    # -- counts ------------------------------------------------------------------------------
    async def add_counts(
        self,
        messages: Iterable[tuple[str, int, int]],
        replies: Iterable[tuple[str, int, str, int]],
        joins: Iterable[tuple[str, str, int]],
    ) -> None:
        """Add buffered counts in one transaction: (room, hour, n), (room, hour, root, n),
        (room, member hash, first seen)."""
        async with self.db.transaction() as tx:
            await tx.executemany(
                "INSERT INTO digest_activity (room_id, hour, messages) VALUES (?, ?, ?) "
                "ON CONFLICT (room_id, hour) DO UPDATE SET messages = messages + excluded.messages",
                list(messages),
            )
            await tx.executemany(
                "INSERT INTO digest_threads (room_id, hour, root, replies) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (room_id, hour, root) DO UPDATE "
                "SET replies = replies + excluded.replies",
                list(replies),
            )
            await tx.executemany(
                "INSERT OR IGNORE INTO digest_members (room_id, member, joined_at) "
                "VALUES (?, ?, ?)",
                list(joins),
            )

    async def messages(self, room_id: str, since: int, until: int) -> int:
        value = await self.db.fetchval(
            "SELECT COALESCE(SUM(messages), 0) FROM digest_activity "
            "WHERE room_id = ? AND hour >= ? AND hour < ?",
            (room_id, since, until),
        )
        return int(value or 0)

    async def new_members(self, room_id: str, since: int, until: int) -> int:
        value = await self.db.fetchval(
            "SELECT COUNT(*) FROM digest_members WHERE room_id = ? AND joined_at >= ? "
            "AND joined_at < ?",
            (room_id, since, until),
        )
        return int(value or 0)

    async def thread_replies(self, room_id: str, since: int, until: int) -> dict[str, int]:
        rows = await self.db.fetchall(
            "SELECT root, SUM(replies) FROM digest_threads "
            "WHERE room_id = ? AND hour >= ? AND hour < ? GROUP BY root",
            (room_id, since, until),
        )
        return {row[0]: int(row[1]) for row in rows}

    async def prune(self, before: int) -> None:
        await self.db.execute("DELETE FROM digest_activity WHERE hour < ?", (before,))
        await self.db.execute("DELETE FROM digest_threads WHERE hour < ?", (before,))

    async def forget_member(self, member_hash: str) -> int:
        return await self.db.execute_rowcount(
            "DELETE FROM digest_members WHERE member = ?", (member_hash,)
        )

    # -- claims ------------------------------------------------------------------------------
    async def claim(self, room_id: str, week: str, due_at: int, now: int, late: bool) -> bool:
        """Claim this room's digest of ``week``; False when it was claimed before."""
        changed = await self.db.execute_rowcount(
            "INSERT OR IGNORE INTO digest_posts (room_id, week, due_at, claimed_at, late) "
            "VALUES (?, ?, ?, ?, ?)",
            (room_id, week, due_at, now, int(late)),
        )
        return changed > 0

    async def claimed(self, room_id: str, week: str) -> Claim | None:
        row = await self.db.fetchone(
            "SELECT room_id, week, due_at, late, event_id FROM digest_posts "
            "WHERE room_id = ? AND week = ?",
            (room_id, week),
        )
        return Claim(row[0], row[1], row[2], bool(row[3]), row[4]) if row else None

    async def unsent(self) -> list[Claim]:
        """Claims with no event: an earlier version's crash mid-send (this one promises each
        claim to the outbox in its own transaction, which records the event when done)."""
        rows = await self.db.fetchall(
            "SELECT room_id, week, due_at, late, event_id FROM digest_posts "
            "WHERE event_id IS NULL ORDER BY due_at"
        )
        return [Claim(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

    async def sent(self, room_id: str, week: str, event_id: str) -> None:
        await self.db.execute(
            "UPDATE digest_posts SET event_id = ? WHERE room_id = ? AND week = ?",
            (event_id, room_id, week),
        )

    # -- subscribers -------------------------------------------------------------------------
    async def subscribe(self, user_id: str, now: int) -> bool:
        changed = await self.db.execute_rowcount(
            "INSERT OR IGNORE INTO digest_subscribers (user_id, since) VALUES (?, ?)",
            (user_id, now),
        )
        return changed > 0

    async def unsubscribe(self, user_id: str) -> bool:
        changed = await self.db.execute_rowcount(
            "DELETE FROM digest_subscribers WHERE user_id = ?", (user_id,)
        )
        return changed > 0

    async def subscribers(self) -> list[str]:
        rows = await self.db.fetchall("SELECT user_id FROM digest_subscribers ORDER BY user_id")
        return [row[0] for row in rows]

    async def is_subscribed(self, user_id: str) -> bool:
        return (
            await self.db.fetchval("SELECT 1 FROM digest_subscribers WHERE user_id = ?", (user_id,))
            is not None
        )

    async def claim_personal(self, user_id: str, week: str, now: int) -> bool:
        changed = await self.db.execute_rowcount(
            "INSERT OR IGNORE INTO digest_personal (user_id, week, claimed_at) VALUES (?, ?, ?)",
            (user_id, week, now),
        )
        return changed > 0

    async def personal_sent(self, user_id: str, week: str, event_id: str) -> None:
        await self.db.execute(
            "UPDATE digest_personal SET event_id = ? WHERE user_id = ? AND week = ?",
            (event_id, user_id, week),
        )

    async def unsent_personal(self) -> list[tuple[str, str, int]]:
        """(person, week, claimed at) of personal digests claimed and never sent."""
        rows = await self.db.fetchall(
            "SELECT user_id, week, claimed_at FROM digest_personal WHERE event_id IS NULL"
        )
        return [(r[0], r[1], int(r[2])) for r in rows]

    async def forget_person(self, user_id: str) -> int:
        removed = await self.unsubscribe(user_id)
        rows = await self.db.execute_rowcount(
            "DELETE FROM digest_personal WHERE user_id = ?", (user_id,)
        )
        return int(removed) + rows

    async def personal_weeks(self, user_id: str) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT week FROM digest_personal WHERE user_id = ? ORDER BY week", (user_id,)
        )
        return [row[0] for row in rows]

    # -- state -------------------------------------------------------------------------------
    async def get_state(self, key: str) -> int | None:
        value = await self.db.fetchval("SELECT value FROM digest_state WHERE key = ?", (key,))
        return None if value is None else int(value)

    async def set_state(self, key: str, value: int) -> None:
        await self.db.execute(
            "INSERT INTO digest_state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
