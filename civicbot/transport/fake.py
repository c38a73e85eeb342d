"""An in-memory transport for fast tests and benchmarks: records what the bot says."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from civicbot.core.events import Event, Message
from civicbot.scheduling.clock import Clock, SystemClock, ms
from civicbot.transport import INTENT_TYPE, EventSink, TransportError


@dataclass
class Sent:
    room_id: str
    type: str
    content: dict[str, Any]
    txn_id: str
    event_id: str

    @property
    def body(self) -> str:
        return str(self.content.get("body", ""))


@dataclass
class FakeRoom:
    room_id: str
    members: list[str]
    power_levels: dict[str, Any] = field(default_factory=dict)
    create: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    join_rule: str = "invite"
    direct_for: str | None = None  # made as a DM with this person (the bot's m.direct)
    state: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # other state
    joined_at: dict[str, int] = field(default_factory=dict)  # ms, for joined_since


class FakeTransport:
    """Implements :class:`civicbot.transport.Transport` without a network.

    Deduplicates sends by ``txn_id`` the way a homeserver does, so tests can prove that a
    replayed handler does not speak twice."""

    def __init__(self, user_id: str = "@civicbot:test", clock: Clock | None = None) -> None:
        self.user_id = user_id
        # Stamps the bot's own events as a homeserver would (a poll end's stamp is its cut-off).
        self.clock: Clock = clock or SystemClock()
        self.sent: list[Sent] = []
        self.rooms: dict[str, FakeRoom] = {}
        self.joined: set[str] = set()
        self.left: set[str] = set()
        self._by_txn: dict[tuple[str, str], str] = {}  # per room, as a homeserver keeps them
        self._ids = itertools.count(1)
        self._stopped = asyncio.Event()
        self.fail_sends = 0  # make the next N sends raise, to test error paths
        self._made: set[str] = set()  # direct chats this fake created
        self.created_rooms: list[tuple[str, str, list[str]]] = []  # (room, name, invited)

    # -- set-up helpers for tests -------------------------------------------------------------
    def add_room(
        self,
        room_id: str,
        members: list[str],
        power_levels: dict[str, Any] | None = None,
        creator: str | None = None,
        room_version: str = "10",
        direct_for: str | None = None,
    ) -> FakeRoom:
        """A room with ``members`` and the bot; ``direct_for`` makes it that person's DM with
        the bot (as if they had invited it with ``is_direct``, or the bot had made it)."""
        creator = creator or members[0]
        if power_levels is None:
            # As Synapse makes them: from room version 12 the creator has unlimited power and
            # is not listed (checked against Synapse by tests/integration/test_transport_contract)
            supreme = room_version.isdigit() and int(room_version) >= 12
            power_levels = {"users": {} if supreme else {creator: 100}}
        room = FakeRoom(
            room_id,
            [*members, self.user_id] if self.user_id not in members else list(members),
            power_levels,
            {"sender": creator, "content": {"room_version": room_version, "creator": creator}},
        )
        room.direct_for = direct_for
        self.rooms[room_id] = room
        return room

    def new_event_id(self) -> str:
        return f"$fake{next(self._ids)}"

    def make_event(
        self,
        room_id: str,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        ts: int = 0,
    ) -> Event:
        raw: dict[str, Any] = {
            "event_id": self.new_event_id(),
            "sender": sender,
            "type": event_type,
            "content": content,
            "origin_server_ts": ts,
        }
        if state_key is not None:
            raw["state_key"] = state_key
        if event_type == "m.room.redaction":
            raw["redacts"] = content.get("redacts")
        self.rooms.setdefault(room_id, FakeRoom(room_id, [sender, self.user_id])).events.append(raw)
        return Event.from_raw(raw, room_id)

    def texts(self, room_id: str | None = None) -> list[str]:
        return [
            s.body
            for s in self.sent
            if s.type == "m.room.message" and (room_id is None or s.room_id == room_id)
        ]

    def shown(self, event_id: str) -> str:
        """What clients show for the bot's message ``event_id``: its latest edit, else itself."""
        text = next(s.body for s in self.sent if s.event_id == event_id)
        for s in self.sent:
            relation = s.content.get("m.relates_to") or {}
            if relation.get("rel_type") == "m.replace" and relation.get("event_id") == event_id:
                text = s.content["m.new_content"]["body"]
        return text

    # -- Transport -----------------------------------------------------------------------------
    async def run(self, sink: EventSink) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        self._stopped.set()

    async def send_message(self, room_id: str, message: Message, txn_id: str) -> str:
        return await self.send_event(room_id, "m.room.message", message.content(), txn_id)

    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> str:
        if (room_id, txn_id) in self._by_txn:
            return self._by_txn[(room_id, txn_id)]
        if self.fail_sends > 0:
            self.fail_sends -= 1
            raise TransportError("simulated failure", "M_UNKNOWN")
        event_id = self.new_event_id()
        self._by_txn[(room_id, txn_id)] = event_id
        self.sent.append(Sent(room_id, event_type, content, txn_id, event_id))
        raw = {
            "event_id": event_id,
            "sender": self.user_id,
            "type": event_type,
            "content": content,
            "origin_server_ts": ms(self.clock.now()),
        }
        self.rooms.setdefault(room_id, FakeRoom(room_id, [self.user_id])).events.append(raw)
        return event_id

    async def send_file(
        self, room_id: str, data: bytes, filename: str, content_type: str, txn_id: str
    ) -> str:
        content = {
            "msgtype": "m.file",
            "body": filename,
            "filename": filename,
            "info": {"mimetype": content_type, "size": len(data)},
            "url": "mxc://fake/file",
            "m.mentions": {},
        }
        event_id = await self.send_event(room_id, "m.room.message", content, txn_id)
        self.sent[-1].content["_data"] = data
        return event_id

    async def redact(self, room_id: str, event_id: str, reason: str, txn_id: str) -> str:
        return await self.send_event(
            room_id, "m.room.redaction", {"redacts": event_id, "reason": reason}, txn_id
        )

    async def join(self, room_id: str) -> None:
        self.joined.add(room_id)

    async def leave(self, room_id: str) -> None:
        self.left.add(room_id)

    async def state_event(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        room = self.rooms.get(room_id)
        if room is None:
            return None
        if event_type == "m.room.power_levels":
            return room.power_levels
        if event_type == "m.room.create":
            return room.create.get("content")
        if event_type == "m.room.join_rules" and (event_type, state_key) not in room.state:
            return {"join_rule": room.join_rule}
        return room.state.get((event_type, state_key))

    async def create_event(self, room_id: str) -> dict[str, Any] | None:
        room = self.rooms.get(room_id)
        return room.create if room else None

    async def joined_since(self, room_id: str, user_id: str) -> int | None:
        room = self.rooms.get(room_id)
        if room is None or user_id not in room.members:
            return None
        return room.joined_at.get(user_id)

    async def joined_members(self, room_id: str) -> list[str]:
        room = self.rooms.get(room_id)
        return list(room.members) if room else []

    async def joined_rooms(self) -> list[str]:
        return [
            r.room_id
            for r in self.rooms.values()
            if self.user_id in r.members and r.room_id not in self.left
        ]

    async def state_events(self, room_id: str, event_type: str) -> dict[str, dict[str, Any]]:
        room = self.rooms.get(room_id)
        found = room.state.items() if room else ()
        return {key: content for (kind, key), content in found if kind == event_type and content}

    async def direct_room(self, user_id: str) -> str:
        base = f"!dm-{user_id.strip('@').replace(':', '-')}"
        room_id, n = f"{base}:test", 1
        while room_id in self.rooms and not await self.is_direct_with(room_id, user_id):
            room = self.rooms[room_id]
            if room_id in self._made and set(room.members) == {user_id, self.user_id}:
                break  # one this fake made for them and forgot: a test may look there again
            n += 1
            room_id = f"{base}-{n}:test"
        if room_id not in self.rooms:
            self.add_room(room_id, [user_id], creator=self.user_id)
            self._made.add(room_id)
        self.rooms[room_id].direct_for = user_id
        return room_id

    async def is_direct_with(self, room_id: str, user_id: str) -> bool:
        """The DM rule on the fake's own records (see :mod:`civicbot.transport.direct`)."""
        room = self.rooms.get(room_id)
        return (
            room is not None
            and room.direct_for == user_id
            and room.join_rule == "invite"
            and set(room.members) == {self.user_id, user_id}
        )

    async def known_direct_room(self, user_id: str) -> str | None:
        return next((r.room_id for r in self.rooms.values() if r.direct_for == user_id), None)

    async def forget_direct_room(self, user_id: str) -> int:
        forgotten = 0
        for room in self.rooms.values():
            if room.direct_for == user_id:
                room.direct_for = None
                forgotten += 1
        return forgotten

    async def create_private_room(self, name: str, invite: list[str], intent: str = "") -> str:
        room_id = f"!private{next(self._ids)}:test"
        room = self.add_room(room_id, [self.user_id, *invite], creator=self.user_id)
        room.create["content"]["name"] = name
        if intent:
            room.state[(INTENT_TYPE, "")] = {"key": intent}
        self.created_rooms.append((room_id, name, list(invite)))
        return room_id

    async def relations(
        self, room_id: str, event_id: str, rel_type: str | None = None
    ) -> list[Event]:
        room = self.rooms.get(room_id)
        found = []
        for raw in room.events if room else []:
            rel = raw.get("content", {}).get("m.relates_to") or {}
            if rel.get("event_id") == event_id and (
                rel_type is None or rel.get("rel_type") == rel_type
            ):
                found.append(Event.from_raw(raw, room_id))
        return found
