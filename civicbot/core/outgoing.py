"""Everything the bot sends leaves through :class:`Outgoing`: transaction ids derived from what
caused the send, pacing per room, the mention limits on every event of every type, and who is
notified.

Who a message notifies is decided here, once for every plugin (Synapse's push rules and
Element's agree on this): a notice notifies nobody; a message with ``notify`` is sent as
``m.text`` mentioning exactly those people, but only where they are everyone in the room
besides the bot (an ``m.text`` in a bigger room would notify every member); and every event
carries ``m.mentions``, which switches off the legacy rules that match display names and
``@room`` in its text, whatever its type (a poll start too).

When a handler or job is replayed after a crash, its sends repeat the same transaction ids and
the homeserver keeps only the first copy, so nobody is answered twice. A send therefore always
has a key: the event that caused it, the job run that made it, or a key its caller names.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from civicbot.core.events import Message, matrix_to, via_servers
from civicbot.policy.limits import SendPacer
from civicbot.policy.permissions import (
    MAX_PLAIN_MENTIONS,
    defuse_room_ping,
    defuse_user_ids,
    restrict_mentions,
    user_ids_in,
)
from civicbot.transport import Transport, TransportError

log = logging.getLogger("civicbot.core.outgoing")

# Keys of an event's content that clients read as its text (MSC1767 and MSC3381 included), in
# which an ``@room`` or a crowd of names is defused like in a message body.
MAX_FILE_AUDIENCE = 2  # a direct chat, or an introduction room of two people
_TEXT_KEYS = ("body", "org.matrix.msc1767.text", "m.text")


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
        others: set[str] = set()
        if message.notify:
            others = await self._others(room_id)
            if others <= set(message.notify):
                # Everyone here is meant to hear it: an m.text mentioning exactly them.
                message.notice = False
                message.mentions = tuple(sorted({*message.mentions, *message.notify}))
        txn = self._txn(room_id)
        await self._pacer.wait(room_id)
        try:
            event_id = await self._transport.send_message(room_id, message, txn)
        except TransportError as exc:
            if not _other_room_relation(exc) or "m.new_content" in message.extra:
                raise
            # A reply or thread to an event of the room this one replaced (a room upgrade moved
            # the item here): said without the relation, which the homeserver refuses across
            # rooms.
            message.reply_to = message.thread_root = None
            message.extra.pop("m.relates_to", None)
            event_id = await self._transport.send_message(room_id, message, txn)
        if message.notify and not others <= set(message.notify):
            await self._tell_privately(room_id, event_id, message, sorted(others))
        return event_id

    async def _others(self, room_id: str) -> set[str]:
        return set(await self._transport.joined_members(room_id)) - {self._transport.user_id}

    async def _tell_privately(
        self, room_id: str, event_id: str, message: Message, members: list[str]
    ) -> None:
        """A message for some people in a room with others stays a silent notice there (an
        ``m.text`` would notify every member); each of them is notified by a direct message
        with its text and a link to it."""
        link = matrix_to(room_id, event_id, via_servers(members))
        for person in [p for p in dict.fromkeys(message.notify) if p in members][
            :MAX_PLAIN_MENTIONS
        ]:
            direct = await self._transport.direct_room(person)
            copy = Message(f"{message.text}\n\n(In the room: {link})", notify=(person,))
            copy.notice, copy.mentions = False, (person,)
            txn = self._txn(direct)
            await self._pacer.wait(direct)
            await self._transport.send_message(direct, copy, txn)

    async def event(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        *,
        may_ping_room: bool = False,
    ) -> str:
        """A raw event of any type (a native poll's start or end, an edit, a reaction), sent
        with the same mention limits as a message and an ``m.mentions`` that says exactly who
        it pings (nobody, unless its caller names people), so no client falls back to matching
        names or ``@room`` in its text."""
        content = _limited(content, may_ping_room)
        replacement = content.get("m.new_content")
        if isinstance(replacement, dict):
            content["m.new_content"] = _limited(replacement, may_ping_room)
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
        """Post a file. An ``m.file`` notifies every member of the room it goes to (no push
        rule silences it), so it goes only where everyone is meant to have it: the core
        refuses a file for a room with more than two other members (send it by DM)."""
        others = set(await self._transport.joined_members(room_id)) - {self._transport.user_id}
        if len(others) > MAX_FILE_AUDIENCE:
            raise ValueError(
                f"a file would notify {len(others)} people in {room_id}: send it by direct "
                "message to those who want it"
            )
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
    """Content of any event type (a raw message, a poll start, an edit's m.new_content) with the
    mention limits applied to every text clients read and an ``m.mentions`` that says exactly
    what may ping."""
    raw = content.get("m.mentions")
    raw = raw if isinstance(raw, dict) else {}
    users = raw.get("user_ids")
    mentions = tuple(str(u) for u in users) if isinstance(users, list) else ()
    html = content.get("formatted_body")
    # The texts an event carries are judged together: twelve names spread over a poll's
    # question and fallback text are as many pings as twelve in one body.
    texts = {key: content[key] for key in _TEXT_KEYS if isinstance(content.get(key), str)}
    text = "\n".join(texts.values())
    too_many = not may_ping_room and len(set(mentions) | user_ids_in(text)) > MAX_PLAIN_MENTIONS
    _, html, mentions, room = restrict_mentions(
        text,
        html if isinstance(html, str) else None,
        mentions,
        bool(raw.get("room")),
        may_ping_room,
    )
    limited = dict(content)
    for key, value in texts.items():
        if not may_ping_room:
            value = defuse_room_ping(value)
        limited[key] = defuse_user_ids(value) if too_many else value
    if html is not None:
        limited["formatted_body"] = html
    new_mentions: dict[str, Any] = {}
    if mentions:
        new_mentions["user_ids"] = sorted(set(mentions))
    if room:
        new_mentions["room"] = True
    limited["m.mentions"] = new_mentions
    return limited
