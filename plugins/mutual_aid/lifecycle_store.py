"""SQL the scheduled jobs run: expiry, the reminder before it, and the digest's sections.

Private needs come back with ``poster`` None here as everywhere (see :mod:`store`).
"""

from __future__ import annotations

from datetime import datetime

from civicbot_plugins.mutual_aid.models import OPEN, Post, to_iso
from civicbot_plugins.mutual_aid.store import AidStore


class AidJobs:
    """Queries for the expiry job, expiry reminders and the weekly digest."""

    def __init__(self, store: AidStore):
        self.store = store
        self.db = store.db

    # -- expiry --------------------------------------------------------------------------------
    async def past_expiry(
        self, now: datetime, limit: int = 500, after: tuple[str, int] = ("", 0)
    ) -> list[Post]:
        """Open posts whose expiry has passed (for the expiry job), a page at a time in
        (expires_at, id) order after ``after``: a post the job leaves open is not read again."""
        return await self.store._many(
            "state = 'open' AND expires_at <= ? AND (expires_at, id) > (?, ?)"
            " ORDER BY expires_at, id LIMIT ?",
            (to_iso(now), after[0], after[1], limit),
        )

    async def expiring_between(self, now: datetime, until: datetime) -> list[Post]:
        """Open posts expiring in (now, until] whose poster has not been reminded yet."""
        return await self.store._many(
            "state = 'open' AND reminded = 0 AND expires_at > ? AND expires_at <= ?"
            " ORDER BY expires_at",
            (to_iso(now), to_iso(until)),
        )

    async def mark_reminded(self, post_id: int) -> bool:
        """True for the first caller only, so a reminder is sent once."""
        return (
            await self.db.execute_rowcount(
                "UPDATE mutual_aid_posts SET reminded = 1 WHERE id = ? AND reminded = 0",
                (post_id,),
            )
            > 0
        )

    # -- digest --------------------------------------------------------------------------------
    async def created_between(
        self, room_id: str, kind: str, since: datetime, until: datetime
    ) -> list[Post]:
        return await self.store._many(
            "room_id = ? AND kind = ? AND created_at >= ? AND created_at < ? ORDER BY id",
            (room_id, kind, to_iso(since), to_iso(until)),
        )

    async def waiting_needs(self, room_id: str, now: datetime, limit: int = 20) -> list[Post]:
        """Needs still open (no helper accepted), oldest first, for the digest. Private ones
        come back with ``poster`` None, like everywhere else."""
        return await self.store._many(
            "room_id = ? AND kind = 'need' AND state = ? AND expires_at > ? ORDER BY id LIMIT ?",
            (room_id, OPEN, to_iso(now), limit),
        )

    async def thanks_between(self, room_id: str, since: datetime, until: datetime) -> list[Post]:
        """Needs marked done in the period whose requester opted in to a public thank-you."""
        return await self.store._many(
            "room_id = ? AND kind = 'need' AND state = 'done' AND thanks = 1"
            " AND updated_at >= ? AND updated_at < ? ORDER BY updated_at",
            (room_id, to_iso(since), to_iso(until)),
        )

    async def set_thanks(self, post_id: int) -> None:
        """The requester asked for a thank-you when marking the need done."""
        await self.db.execute("UPDATE mutual_aid_posts SET thanks = 1 WHERE id = ?", (post_id,))

    async def reopen_helped_by(self, helper: str, now: datetime) -> list[Post]:
        """Matched needs ``helper`` was accepted for, reopened (before ``helper`` is forgotten,
        so no need is left matched to nobody)."""
        rows = await self.db.fetchall(
            "SELECT m.id AS match_id, p.id AS post_id FROM mutual_aid_matches m"
            " JOIN mutual_aid_posts p ON p.id = m.post_id"
            " WHERE m.helper = ? AND m.state = 'accepted' AND p.state = 'matched'",
            (helper,),
        )
        reopened = []
        for row in rows:
            async with self.db.transaction():
                await self.db.execute(
                    "UPDATE mutual_aid_matches SET state = 'backed_out', updated_at = ?"
                    " WHERE id = ?",
                    (to_iso(now), row["match_id"]),
                )
                await self.db.execute(
                    "UPDATE mutual_aid_posts SET state = 'open', updated_at = ? WHERE id = ?",
                    (to_iso(now), row["post_id"]),
                )
            post = await self.store.by_id(row["post_id"])
            if post is not None:
                reopened.append(post)
        return reopened
