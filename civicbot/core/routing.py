"""Where links to a room are routed: the ``via`` servers every ``matrix.to`` link carries.

The core works them out from room state it reads anyway (members, power levels, the server ACL)
the first time a room is seen and again whenever one of those changes, and records them for
:func:`civicbot.core.events.matrix_to`, so a link made by any plugin, in any message, digest or
calendar file, opens from any homeserver.
"""

from __future__ import annotations

import logging

from civicbot.core.events import (
    Event,
    EventKind,
    forget_all_via,
    forget_via,
    known_via,
    remember_via,
    via_generation,
    via_servers,
)
from civicbot.policy.permissions import Permissions
from civicbot.transport import Transport, TransportError

log = logging.getLogger("civicbot.core.routing")

# State whose change changes the servers a room is best reached through.
_ROUTING_STATE = frozenset(
    ("m.room.member", "m.room.power_levels", "m.room.server_acl", "m.room.create")
)
_ROUTING_KINDS = frozenset((EventKind.MEMBERSHIP, EventKind.POWER_LEVELS))


async def room_via(transport: Transport, permissions: Permissions, room_id: str) -> list[str]:
    """Up to three servers for links to ``room_id``, as the spec recommends, and record them."""
    generation = via_generation(room_id)  # a change read meanwhile must not be overwritten
    members = await transport.joined_members(room_id)
    power = await permissions.power_levels(room_id)
    acl = await transport.state_event(room_id, "m.room.server_acl")
    servers = via_servers(members, {m: power.level(m) for m in members}, acl)
    remember_via(room_id, servers, generation)
    return servers


class Routing:
    """Keeps every room's ``via`` servers current for the rooms the bot hears from."""

    def __init__(self, transport: Transport, permissions: Permissions):
        self._transport = transport
        self._permissions = permissions
        forget_all_via()

    def stale(self, event: Event) -> bool:
        """Before an event is handled: forget a room's servers when its routing state changes;
        True when they are unknown, so :meth:`refresh` should work them out. Synchronous, so
        the plain message it almost always passes costs no coroutine."""
        if event.kind in _ROUTING_KINDS or (
            event.state_key is not None and event.type in _ROUTING_STATE
        ):
            forget_via(event.room_id)
        return event.kind is not EventKind.INVITE and known_via(event.room_id) is None

    async def observe(self, event: Event) -> None:
        """:meth:`stale`, then :meth:`refresh` if so. Never raises (a link without ``via``
        still works on the bot's own homeserver)."""
        if self.stale(event):
            await self.refresh(event.room_id)

    async def refresh(self, room_id: str) -> None:
        try:
            await room_via(self._transport, self._permissions, room_id)
        except (TransportError, OSError) as exc:
            log.debug("no via servers for %s yet: %s", room_id, exc)

    async def warm(self) -> None:
        """Every room the bot is in, once after a start (links in a weekly digest may point to
        rooms that have been quiet since)."""
        try:
            rooms = await self._transport.joined_rooms()
        except TransportError:
            return
        for room_id in rooms:
            if known_via(room_id) is None:
                await self.refresh(room_id)
