"""SQL for timebank hours, reports, notification limits, and a person's export and forgetting.

Hours received on a private need are sealed like its requester (see :mod:`store`). Forgetting
removes a person's posts and takes their name off matches, hours and reports; the rows stay, so
a room's totals (hours given, needs met) do not change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from civicbot_plugins.mutual_aid.models import Balance, Post, Report, from_iso, to_iso
from civicbot_plugins.mutual_aid.store import AidStore, requester_context

HOURS_CONTEXT = "hours-receiver"


class AidLedger:
    """Repository over ``mutual_aid_hours``, ``_reports`` and ``_notify_counts``, plus export
    and forget across every mutual_aid table."""

    def __init__(self, store: AidStore):
        self.store = store
        self.db = store.db
        self.sealer = store.sealer

    # -- timebank ------------------------------------------------------------------------------
    async def record_hours(
        self, post: Post, giver: str, receiver: str, minutes: int, now: datetime
    ) -> int:
        """Hours from ``giver`` (the helper) to ``receiver`` (the requester) for a need; the
        receiver is sealed when the need is private. Returns the ledger row id."""
        if minutes <= 0:
            raise ValueError("minutes must be positive")
        sealed = self.sealer.seal(receiver, HOURS_CONTEXT) if post.private else None
        return await self.db.execute(
            "INSERT INTO mutual_aid_hours (room_id, post_id, giver, receiver, receiver_sealed,"
            " minutes, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                post.room_id,
                post.id,
                giver,
                None if post.private else receiver,
                sealed,
                minutes,
                to_iso(now),
            ),
        )

    async def balance(self, user_id: str, room_id: str | None = None) -> Balance:
        """``!hours``: minutes ``user_id`` gave and received (in one room, or everywhere)."""
        where, params = ("", ()) if room_id is None else (" AND room_id = ?", (room_id,))
        given = await self.db.fetchval(
            f"SELECT COALESCE(SUM(minutes), 0) FROM mutual_aid_hours WHERE giver = ?{where}",
            (user_id, *params),
        )
        received = await self.db.fetchval(
            f"SELECT COALESCE(SUM(minutes), 0) FROM mutual_aid_hours WHERE receiver = ?{where}",
            (user_id, *params),
        )
        for row in await self._sealed_hours(room_id):
            if self.sealer.open(row["receiver_sealed"], HOURS_CONTEXT) == user_id:
                received += row["minutes"]
        return Balance(int(given), int(received))

    async def _sealed_hours(self, room_id: str | None) -> list[Any]:
        where, params = ("", ()) if room_id is None else (" AND room_id = ?", (room_id,))
        return await self.db.fetchall(
            "SELECT id, minutes, receiver_sealed FROM mutual_aid_hours"
            f" WHERE receiver_sealed IS NOT NULL{where}",
            params,
        )

    async def room_total(self, room_id: str) -> int:
        """Minutes given in the room, everyone together (unchanged by forgetting)."""
        return int(
            await self.db.fetchval(
                "SELECT COALESCE(SUM(minutes), 0) FROM mutual_aid_hours WHERE room_id = ?",
                (room_id,),
            )
        )

    # -- reports -------------------------------------------------------------------------------
    async def add_report(self, post: Post, reporter: str, reason: str, now: datetime) -> Report:
        report_id = await self.db.execute(
            "INSERT INTO mutual_aid_reports (post_id, room_id, reporter, reason, at)"
            " VALUES (?, ?, ?, ?, ?)",
            (post.id, post.room_id, reporter, reason, to_iso(now)),
        )
        return Report(report_id, post.id, post.room_id, reporter, reason, now)

    async def reports_on(self, post_id: int) -> list[Report]:
        rows = await self.db.fetchall(
            "SELECT * FROM mutual_aid_reports WHERE post_id = ? ORDER BY id", (post_id,)
        )
        return [
            Report(
                r["id"], r["post_id"], r["room_id"], r["reporter"], r["reason"], from_iso(r["at"])
            )
            for r in rows
        ]

    # -- notification limits -------------------------------------------------------------------
    async def take_notification(self, user_id: str, day: str, daily_limit: int) -> bool:
        """Count one "a neighbour needs something you offered" DM to ``user_id`` on ``day``
        (``YYYY-MM-DD`` in the room's zone) if under ``daily_limit``; False means don't send."""
        async with self.db.transaction():
            sent = await self.db.fetchval(
                "SELECT sent FROM mutual_aid_notify_counts WHERE user_id = ? AND day = ?",
                (user_id, day),
            )
            if (sent or 0) >= daily_limit:
                return False
            await self.db.execute(
                "INSERT INTO mutual_aid_notify_counts (user_id, day, sent) VALUES (?, ?, 1)"
                " ON CONFLICT(user_id, day) DO UPDATE SET sent = sent + 1",
                (user_id, day),
            )
        return True

    async def prune_notifications(self, before_day: str) -> int:
        return await self.db.execute_rowcount(
            "DELETE FROM mutual_aid_notify_counts WHERE day < ?", (before_day,)
        )

    # -- privacy -------------------------------------------------------------------------------
    async def export(self, user_id: str) -> dict[str, Any]:
        """``!mydata``: the person's posts (private needs included), matches, hours and reports."""
        posts = await self._posts_of(user_id)
        matches = await self.db.fetchall(
            "SELECT m.state, m.created_at, p.kind, p.number FROM mutual_aid_matches m"
            " JOIN mutual_aid_posts p ON p.id = m.post_id WHERE m.helper = ? ORDER BY m.id",
            (user_id,),
        )
        hours = await self.db.fetchall(
            "SELECT room_id, giver, receiver, minutes, at FROM mutual_aid_hours"
            " WHERE giver = ? OR receiver = ? ORDER BY id",
            (user_id, user_id),
        )
        sealed_received = [
            row
            for row in await self._sealed_hours(None)
            if self.sealer.open(row["receiver_sealed"], HOURS_CONTEXT) == user_id
        ]
        reports = await self.db.fetchall(
            "SELECT room_id, reason, at FROM mutual_aid_reports WHERE reporter = ? ORDER BY id",
            (user_id,),
        )
        return {
            "posts": [
                {
                    "id": p.short_id,
                    "room_id": p.room_id,
                    "private": p.private,
                    "text": p.body,
                    "category": p.category,
                    "urgency": p.urgency,
                    "area": p.area,
                    "state": p.state,
                    "created_at": to_iso(p.created_at),
                    "expires_at": to_iso(p.expires_at),
                }
                for p in posts
            ],
            "helping": [
                {
                    "need": f"{'N' if r['kind'] == 'need' else 'O'}-{r['number']}",
                    "state": r["state"],
                    "at": r["created_at"],
                }
                for r in matches
            ],
            "hours": [
                {
                    "room_id": r["room_id"],
                    "direction": "given" if r["giver"] == user_id else "received",
                    "minutes": r["minutes"],
                    "at": r["at"],
                }
                for r in hours
            ]
            + [{"direction": "received", "minutes": r["minutes"]} for r in sealed_received],
            "reports": [dict(r) for r in reports],
        }

    async def public_posts_of(self, user_id: str) -> list[Post]:
        """The posts ``user_id`` made in the open (never a private need: see :meth:`forget`)."""
        return [post for post in await self._posts_of(user_id) if not post.private]

    async def _posts_of(self, user_id: str) -> list[Post]:
        rows = await self.db.fetchall(
            "SELECT p.*, r.sealed FROM mutual_aid_posts p LEFT JOIN mutual_aid_requesters r"
            " ON r.post_id = p.id WHERE p.poster = ? OR p.private = 1 ORDER BY p.id",
            (user_id,),
        )
        return [
            Post.from_row(row)
            for row in rows
            if row["poster"] == user_id
            or (
                row["sealed"] is not None
                and self.sealer.open(row["sealed"], requester_context(row["id"])) == user_id
            )
        ]

    async def forget(self, user_id: str) -> tuple[int, int]:
        """``!forget me``: delete the person's posts (their matches go with them; hours on them
        stay, unnamed) and take their name off the rest. Returns (removed, anonymised)."""
        async with self.db.transaction():
            posts = await self._posts_of(user_id)
            for post in posts:
                await self.db.execute("DELETE FROM mutual_aid_posts WHERE id = ?", (post.id,))
            anonymised = await self.db.execute_rowcount(
                "UPDATE mutual_aid_matches SET helper = NULL WHERE helper = ?", (user_id,)
            )
            anonymised += await self.db.execute_rowcount(
                "UPDATE mutual_aid_hours SET giver = CASE giver WHEN ? THEN NULL ELSE giver END,"
                " receiver = CASE receiver WHEN ? THEN NULL ELSE receiver END"
                " WHERE giver = ? OR receiver = ?",
                (user_id,) * 4,
            )
            for row in await self._sealed_hours(None):
                if self.sealer.open(row["receiver_sealed"], HOURS_CONTEXT) == user_id:
                    anonymised += await self.db.execute_rowcount(
                        "UPDATE mutual_aid_hours SET receiver_sealed = NULL WHERE id = ?",
                        (row["id"],),
                    )
            anonymised += await self.db.execute_rowcount(
                "UPDATE mutual_aid_reports SET reporter = NULL WHERE reporter = ?", (user_id,)
            )
            await self.db.execute(
                "DELETE FROM mutual_aid_notify_counts WHERE user_id = ?", (user_id,)
            )
        # No page images of the deleted rows stay behind in the log.
        await self.db.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(posts), anonymised
