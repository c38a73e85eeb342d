"""Everything the bot sends leaves through :class:`Outgoing`: transaction ids derived from what
caused the send, pacing per room, and the mention limits on every message.

When a handler or job is replayed after a crash, its sends repeat the same transaction ids and
the homeserver keeps only the first copy, so nobody is answered twice. A send therefore always
has a key: the event that caused it, the job run that made it, or a key its caller names.
"""

from __future__ import annotations

import hashlib
from typing import Any

from civicbot.core.events import Message
from civicbot.policy.limits import SendPacer
from civicbot.policy.permissions import restrict_mentions
from civicbot.transport import Transport, TransportError


def txn_key(*parts: str) -> str:
    """A short, stable transaction-id prefix derived from what caused the sends."""
    return "cb" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]


class Outgoing:
    """Sends with transaction ids ``<key>.<n>``: the n-th send made for one cause.

    Every send waits its turn in the room's outgoing bucket (:class:`~civicbot.policy.limits.
    SendPacer`): the bot may be slowed down, but it never floods a room and never drops a send.
    """

    def __init__(self, transport: Transport, key: str, pacer: SendPacer):
        self._transport = transport
        self._key = key
        self._counts: dict[str, int] = {}
        self._pacer = pacer

    def _txn(self, room_id: str) -> str:
        # Counted per room: a homeserver deduplicates per room, and a retry that reaches the
        # rooms in another order must still repeat each room's own ids.
        count = self._counts[room_id] = self._counts.get(room_id, 0) + 1
        return f"{self._key}.{count}"

    async def message(self, room_id: str, message: Message, *, may_ping_room: bool) -> str:
        """Send a message after applying the mention limits: unless ``may_ping_room`` (the
        person it is sent for may notify the room), no ``@room`` and no mass mentions."""
        _fold_raw_mentions(message)
        clashing = {"body", "formatted_body", "m.mentions"} & set(message.extra)
        if clashing:
            raise ValueError(f"set {', '.join(sorted(clashing))} through Message, not extra")
        message.text, message.html, message.mentions, message.mention_room = restrict_mentions(
            message.text, message.html, message.mentions, message.mention_room, may_ping_room
        )
        replacement = message.extra.get("m.new_content")
        if isinstance(replacement, dict):  # an edit: what clients show is limited the same way
            message.extra["m.new_content"] = _limited(replacement, may_ping_room)
        txn = self._txn(room_id)
        await self._pacer.wait(room_id)
        try:
            return await self._transport.send_message(room_id, message, txn)
        except TransportError as exc:
            if not _other_room_relation(exc) or "m.new_content" in message.extra:
                raise
        # A reply or thread to an event of the room this one replaced (a room upgrade moved
        # the item here): said without the relation, which the homeserver refuses across rooms.
        message.reply_to = message.thread_root = None
        message.extra.pop("m.relates_to", None)
        return await self._transport.send_message(room_id, message, txn)

    async def event(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        """A raw event (a native poll, a reaction). A raw ``m.room.message`` gets the mention
        limits for nobody in particular: no ``@room``, no mass mentions."""
        if event_type == "m.room.message":
            content = _limited(content, may_ping_room=False)
        txn = self._txn(room_id)
        await self._pacer.wait(room_id)
        try:
            return await self._transport.send_event(room_id, event_type, content, txn)
        except TransportError as exc:
            if not _other_room_relation(exc):
                raise
        if event_type != "m.room.message" or "m.new_content" in content:
            # An edit of, or a poll end for, an event in the room a room upgrade replaced:
            # it can't be said here (the plugin's own notice still is).
            return ""
        plain = {k: v for k, v in content.items() if k != "m.relates_to"}
        return await self._transport.send_event(room_id, event_type, plain, txn)

    async def file(self, room_id: str, data: bytes, filename: str, content_type: str) -> str:
        txn = self._txn(room_id)
        await self._pacer.wait(room_id)
        return await self._transport.send_file(room_id, data, filename, content_type, txn)

    async def redact(self, room_id: str, event_id: str, reason: str) -> str:
        txn = self._txn(room_id)
        await self._pacer.wait(room_id)
        return await self._transport.redact(room_id, event_id, reason, txn)


def _other_room_relation(exc: TransportError) -> bool:
    """Synapse's refusal of a relation to an event in another room."""
    return "Relations must be in the same room" in str(exc)


def _fold_raw_mentions(message: Message) -> None:
    """A raw ``m.mentions`` in ``extra`` is folded into the fields the limits check."""
    raw = message.extra.pop("m.mentions", None)
    if isinstance(raw, dict):
        users = raw.get("user_ids")
        if isinstance(users, list):
            message.mentions = (*message.mentions, *(str(u) for u in users))
        message.mention_room = message.mention_room or bool(raw.get("room"))


def _limited(content: dict[str, Any], may_ping_room: bool) -> dict[str, Any]:
    """Message-like content (a raw message, an edit's m.new_content) with the mention limits
    applied to its text and an ``m.mentions`` that says exactly what may ping."""
    raw = content.get("m.mentions")
    raw = raw if isinstance(raw, dict) else {}
    users = raw.get("user_ids")
    mentions = tuple(str(u) for u in users) if isinstance(users, list) else ()
    body = content.get("body")
    html = content.get("formatted_body")
    text, html, mentions, room = restrict_mentions(
        body if isinstance(body, str) else "",
        html if isinstance(html, str) else None,
        mentions,
        bool(raw.get("room")),
        may_ping_room,
    )
    limited = dict(content)
    if isinstance(body, str):
        limited["body"] = text
    if html is not None:
        limited["formatted_body"] = html
    new_mentions: dict[str, Any] = {}
    if mentions:
        new_mentions["user_ids"] = sorted(set(mentions))
    if room:
        new_mentions["room"] = True
    limited["m.mentions"] = new_mentions
    return limited
