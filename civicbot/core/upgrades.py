"""Room upgrades (``m.room.tombstone``): the bot follows a room to its replacement.

When a room is upgraded (Element's "upgrade room", ``POST /rooms/{id}/upgrade``), the old room
gets a tombstone naming the new one and people move there. The core then:

1. records the replacement (``core_room_replacements``) and joins the new room when it may
   (a public room at once; an invite-only one when the bot is invited to it, recognised by
   its ``m.room.create`` predecessor);
2. in one transaction moves the room's settings and granted roles, and calls every plugin's
   :meth:`~civicbot.core.plugin.Plugin.room_replaced` hook, which moves the plugin's open
   items (and re-arms their jobs) to the new room;
3. from then on sends every promised effect for the old room to the new one.

Done once per pair of rooms, however often the tombstone or the invite is seen again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from civicbot.core.effects import EffectRunner, Say
from civicbot.core.events import Event, matrix_to
from civicbot.storage.database import Database
from civicbot.transport import Transport, TransportError

log = logging.getLogger(__name__)

TOMBSTONE = "m.room.tombstone"
Mover = Callable[[str, str], Awaitable[None]]


class RoomReplacements:
    """Which rooms were replaced by which, and the move from one to the other."""

    def __init__(
        self, db: Database, transport: Transport, move_plugins: Mover, effects: EffectRunner
    ):
        self._db = db
        self._transport = transport
        self._move_plugins = move_plugins
        self._effects = effects

    async def current(self, room_id: str) -> str:
        """The room that now stands for ``room_id``: itself, or its (latest) replacement."""
        seen = {room_id}
        while True:
            new = await self._db.fetchval(
                "SELECT new_room FROM core_room_replacements "
                "WHERE old_room = ? AND moved_at IS NOT NULL",
                (room_id,),
            )
            if new is None or new in seen:
                return room_id
            seen.add(new)
            room_id = str(new)

    async def predecessor(self, room_id: str) -> str | None:
        """The room ``room_id`` replaced, once the move is done."""
        old = await self._db.fetchval(
            "SELECT old_room FROM core_room_replacements "
            "WHERE new_room = ? AND moved_at IS NOT NULL",
            (room_id,),
        )
        return str(old) if old is not None else None

    async def on_tombstone(self, event: Event) -> bool:
        """A tombstone in a room the bot is in: join the replacement and move, if it may."""
        new = event.content.get("replacement_room")
        if event.state_key != "" or not isinstance(new, str) or not new.startswith("!"):
            return False
        old = event.room_id
        await self._db.execute(
            "INSERT OR IGNORE INTO core_room_replacements (old_room, new_room, seen_at) "
            "VALUES (?, ?, ?)",
            (old, new, int(time.time())),
        )
        if new not in await self._transport.joined_rooms():
            try:
                await self._transport.join(new)
            except TransportError as exc:
                # An invite-only replacement: the move happens when the bot is invited.
                log.info("%s was upgraded to %s; waiting for an invite (%s)", old, new, exc)
                return True
        await self.move(old, new)
        return True

    async def on_joined(self, room_id: str) -> bool:
        """Just joined ``room_id``: if it replaces a room the bot was in, move there and say
        so (True); a fresh room gets the usual welcome (False)."""
        create = await self._transport.create_event(room_id)
        content: dict[str, Any] = (create or {}).get("content") or {}
        predecessor = content.get("predecessor")
        old = predecessor.get("room_id") if isinstance(predecessor, dict) else None
        if not isinstance(old, str):
            return False
        # Only a predecessor whose own tombstone names this room: anyone can create a room
        # that claims to succeed another.
        tombstone = await self._transport.state_event(old, TOMBSTONE)
        if not tombstone or tombstone.get("replacement_room") != room_id:
            return False
        await self._db.execute(
            "INSERT OR IGNORE INTO core_room_replacements (old_room, new_room, seen_at) "
            "VALUES (?, ?, ?)",
            (old, room_id, int(time.time())),
        )
        await self.move(old, room_id)
        return True

    async def move(self, old: str, new: str) -> None:
        """Move settings, roles, and every plugin's open items and jobs, once."""
        async with self._db.transaction():
            done = await self._db.fetchval(
                "SELECT moved_at FROM core_room_replacements WHERE old_room = ? AND new_room = ?",
                (old, new),
            )
            if done is not None:
                return
            for table in ("core_room_settings", "core_roles"):
                # A setting or role the new room already has (set there first) wins.
                await self._db.execute(
                    f"UPDATE OR IGNORE {table} SET room_id = ? WHERE room_id = ?", (new, old)
                )
            await self._move_plugins(old, new)
            await self._db.execute(
                "UPDATE core_room_replacements SET moved_at = ? WHERE old_room = ? "
                "AND new_room = ?",
                (int(time.time()), old, new),
            )
            # Said once, with the move: where the finished items and their history are.
            note = (
                "This room replaces an older one: I've brought over its settings, roles and "
                "everything still open (polls, meetings, consultations, needs and offers). "
                f"Earlier items and their history are in the old room: {matrix_to(old)}"
            )
            await self._effects.promise("core", f"upgraded:{old}:{new}", Say(new, note))
        await self._effects.carry_out("core", f"upgraded:{old}:{new}")
        log.info("followed the upgrade of %s to %s", old, new)
