"""The one interface between civicbot and a chat network.

Only :mod:`civicbot.transport.matrix` imports matrix-nio; the core and plugins see this protocol,
which is also what the fake transport of the fast tests implements.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from civicbot.core.events import Event, Message

# Takes one sync batch and returns once it is queued (it may wait while the core is full),
# with an awaitable that completes once every event of the batch has been handled.
EventSink = Callable[[list[Event]], Awaitable[Awaitable[None]]]
# The state event a room made for a promised effect carries ({"key": the effect's key}), so a
# retry after a crash finds the room instead of making a second one (civicbot.core.effects).
INTENT_TYPE = "org.civicbot.intent"


class TransportError(Exception):
    """The homeserver refused a request for a reason retrying will not fix."""

    def __init__(self, message: str, errcode: str = ""):
        super().__init__(message)
        self.errcode = errcode

    @property
    def refused(self) -> bool:
        """The homeserver answered, and said no (not allowed, no such room, too large): no
        outage, so no "could not reach" in the logs."""
        return self.errcode in REFUSALS


REFUSALS = frozenset({"M_FORBIDDEN", "M_NOT_FOUND", "M_TOO_LARGE", "M_BAD_JSON"})


class Transport(Protocol):
    """What the bot needs from a chat network. Every send takes a ``txn_id`` so that a replayed
    handler re-sends with the same id and the homeserver drops the duplicate."""

    user_id: str

    async def run(self, sink: EventSink) -> None:
        """Sync until :meth:`stop`, handing each batch to ``sink``; a batch's position is saved
        only once ``sink``'s awaitable says the batch is handled (and every earlier one)."""

    async def stop(self) -> None: ...

    async def send_message(self, room_id: str, message: Message, txn_id: str) -> str: ...

    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> str: ...

    async def send_file(
        self, room_id: str, data: bytes, filename: str, content_type: str, txn_id: str
    ) -> str: ...

    async def redact(self, room_id: str, event_id: str, reason: str, txn_id: str) -> str: ...

    async def join(self, room_id: str) -> None: ...

    async def leave(self, room_id: str) -> None: ...

    async def state_event(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        """The content of a state event, or None when the room has none."""

    async def create_event(self, room_id: str) -> dict[str, Any] | None:
        """The whole ``m.room.create`` event (its sender is a creator in room version 12)."""

    async def joined_since(self, room_id: str, user_id: str) -> int | None:
        """When ``user_id``'s present stay in the room began (ms since the epoch): the join
        that started it, not a later member event that kept them joined (a new display name).
        None when they are not joined or it cannot be told."""

    async def joined_members(self, room_id: str) -> list[str]: ...

    async def joined_rooms(self) -> list[str]:
        """Every room (spaces included) the bot has joined."""

    async def state_events(self, room_id: str, event_type: str) -> dict[str, dict[str, Any]]:
        """Every state event of ``event_type`` in the room, ``{state_key: content}`` (a space's
        ``m.space.child`` events, one per child room); empty contents are left out."""

    async def direct_room(self, user_id: str) -> str:
        """``user_id``'s direct chat with the bot, created if needed. It always passes the DM
        rule (:mod:`civicbot.transport.direct`): invite-only, exactly the bot and that person
        joined or invited, and made as a DM by one of the two."""

    async def is_direct_with(self, room_id: str, user_id: str) -> bool:
        """Whether ``room_id`` passes the DM rule for ``user_id`` now; the only test of where
        private output may go."""

    async def known_direct_room(self, user_id: str) -> str | None:
        """The direct chat last used with ``user_id``, without checking or creating one."""

    async def forget_direct_room(self, user_id: str) -> int:
        """Drop every record of ``user_id``'s direct chats (``!forget me``); returns how many
        records went."""

    async def create_private_room(self, name: str, invite: list[str], intent: str = "") -> str:
        """Create a new invite-only, unpublished room called ``name`` with exactly the bot and
        ``invite`` in it (invited, not yet joined); returns its id. Each call makes a new room:
        callers remember the id to avoid making a second one. ``intent`` is put in the room as
        an :data:`INTENT_TYPE` state event, by which a retry finds the room."""

    async def relations(
        self, room_id: str, event_id: str, rel_type: str | None = None
    ) -> list[Event]:
        """Every event relating to ``event_id`` (all pages)."""
