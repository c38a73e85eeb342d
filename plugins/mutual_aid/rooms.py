"""SQL: the rooms where mutual aid is in use, so a need sent by DM can be posted in one of the
requester's rooms (the bot asks which when there are several)."""

from __future__ import annotations

from datetime import datetime

from civicbot_plugins.mutual_aid.models import to_iso

from civicbot.api import Database


class AidRooms:
    """Repository over ``mutual_aid_rooms``: every non-DM room the plugin saw activity in."""

    def __init__(self, db: Database):
        self.db = db
        self._known: set[str] = set()

    async def seen(self, room_id: str, now: datetime) -> None:
        if room_id in self._known:
            return
        await self.db.execute(
            "INSERT INTO mutual_aid_rooms (room_id, seen_at) VALUES (?, ?)"
            " ON CONFLICT(room_id) DO NOTHING",
            (room_id, to_iso(now)),
        )
        self._known.add(room_id)

    async def forget_room(self, room_id: str) -> None:
        self._known.discard(room_id)
        await self.db.execute("DELETE FROM mutual_aid_rooms WHERE room_id = ?", (room_id,))

    async def all(self) -> list[str]:
        rows = await self.db.fetchall("SELECT room_id FROM mutual_aid_rooms ORDER BY seen_at")
        return [row["room_id"] for row in rows]
