"""Everything the bot sends leaves through :class:`Outgoing`: transaction ids derived from what
caused the send, pacing per room, and the mention limits on every message.

When a handler or job is replayed after a crash, its sends repeat the same transaction ids and
the homeserver keeps only the first copy, so nobody is answered twice. A send therefore always
has a key: the event that caused it, the job run that made it, or a key its caller names.
"""

from __future__ import annotations

import hashlib
from typing import Any

from civicbot.events import Message
from civicbot.permissions import restrict_mentions
from civicbot.ratelimit import SendPacer
from civicbot.transport import Transport


def txn_key(*parts: str) -> str:
    """A short, stable transaction-id prefix derived from what caused the sends."""
    return "cb" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]


class Outgoing:
    """Sends with transaction ids ``<key>.<n>``: the n-th send made for one cause.

    Every send waits its turn in the room's outgoing bucket (:class:`~civicbot.ratelimit.
    SendPacer`): the bot may be slowed down, but it never floods a room and never drops a send.
    """

    def __init__(self, transport: Transport, key: str, pacer: SendPacer):
        self._transport = transport
        self._key = key
        self._count = 0
        self._pacer = pacer

    def _txn(self) -> str:
        self._count += 1
        return f"{self._key}.{self._count}"

    async def message(self, room_id: str, message: Message, *, may_ping_room: bool) -> str:
        """Send a message after applying the mention limits: unless ``may_ping_room`` (the
        person it is sent for may notify the room), no ``@room`` and no mass mentions."""
        _fold_raw_mentions(message)
        message.text, message.html, message.mentions, message.mention_room = restrict_mentions(
            message.text, message.html, message.mentions, message.mention_room, may_ping_room
        )
        txn = self._txn()
        await self._pacer.wait(room_id)
        return await self._transport.send_message(room_id, message, txn)

    async def event(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        txn = self._txn()
        await self._pacer.wait(room_id)
        return await self._transport.send_event(room_id, event_type, content, txn)

    async def file(self, room_id: str, data: bytes, filename: str, content_type: str) -> str:
        txn = self._txn()
        await self._pacer.wait(room_id)
        return await self._transport.send_file(room_id, data, filename, content_type, txn)

    async def redact(self, room_id: str, event_id: str, reason: str) -> str:
        txn = self._txn()
        await self._pacer.wait(room_id)
        return await self._transport.redact(room_id, event_id, reason, txn)


def _fold_raw_mentions(message: Message) -> None:
    """A raw ``m.mentions`` in ``extra`` is folded into the fields the limits check."""
    raw = message.extra.pop("m.mentions", None)
    if isinstance(raw, dict):
        users = raw.get("user_ids")
        if isinstance(users, list):
            message.mentions = (*message.mentions, *(str(u) for u in users))
        message.mention_room = message.mention_room or bool(raw.get("room"))
