"""Encrypted messages the bot cannot read yet: held, retried when their key arrives, and after a
timeout answered with one short line telling the sender what to do.

A Megolm room key usually reaches the bot moments after the message it unlocks (the sender's
client sends the key as a to-device message, which may come a sync later), so an undecryptable
event is not an error at first. It is written to the database before the sync position moves
past it, so a restart loses nothing; each time a room key arrives (and once after a restart,
against keys that came while the bot was down) the held events are tried again, and those that
decrypt go to the core like any other event. The bot also asks for the key once per session.

When an event is still unreadable ``timeout`` seconds after it was held, the sender is told
once, in the room, in reply to the message, that the bot could not read it and what to do (send
it again; allow their app to share keys with unverified sessions). Once means once per person
*and device* (their ``sender_key``): ten unreadable messages from one phone bring one notice, and
a second megolm session from that phone none; a second device of theirs one more. The notice's
transaction id is derived from the person and device, so a crash between sending it and
recording it cannot double it. Then the held events are dropped.

Logs carry counts and room ids only: never a sender, a body or a ciphertext. The held events
are bounded per room (:data:`ROOM_CAP`): a flood of garbage drops the oldest, with a count in
the log. The "told" records are kept :data:`TOLD_KEEP_DAYS` days, then pruned.

The nio side is :class:`NioCrypto` and :func:`room_keys`, thin adapters; everything else works
on raw event dicts so the tests can drive it with fakes. What the transport calls, and where, is
in ``docs/undecryptable.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from nio import (
    AsyncClient,
    BadEvent,
    EncryptionError,
    ForwardedRoomKeyEvent,
    LocalProtocolError,
    MegolmEvent,
    RoomKeyEvent,
    RoomKeyRequestResponse,
    SyncResponse,
    UnknownBadEvent,
)

from civicbot.core.events import Message
from civicbot.scheduling.clock import Clock, ms
from civicbot.storage.database import Database, Migration
from civicbot.transport import TransportError
from civicbot.transport.http import NETWORK_ERRORS

log = logging.getLogger("civicbot.transport.matrix")

OWNER = "core_undecryptable"
DEFAULT_TIMEOUT_S = 60.0
ROOM_CAP = 200  # held events per room; a flood past this drops the oldest
TOLD_KEEP_DAYS = 30  # after this a device that still withholds keys may be told again
MEGOLM = "m.megolm.v1.aes-sha2"
NOTICE = (
    "{sender}, I couldn't read your encrypted message: I never got its key. Please send it "
    "again, or let your app share keys with unverified sessions."
)

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE core_undecryptable_held (
        event_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        sender_key TEXT NOT NULL,
        session_id TEXT NOT NULL,
        source TEXT NOT NULL,
        received_at INTEGER NOT NULL
    );
    CREATE INDEX core_undecryptable_held_session
        ON core_undecryptable_held(room_id, session_id);
    CREATE INDEX core_undecryptable_held_received
        ON core_undecryptable_held(room_id, received_at);
    CREATE TABLE core_undecryptable_asked (
        room_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        asked_at INTEGER NOT NULL,
        PRIMARY KEY (room_id, session_id)
    );
    CREATE TABLE core_undecryptable_told (
        sender TEXT NOT NULL,
        sender_key TEXT NOT NULL,
        told_at INTEGER NOT NULL,
        PRIMARY KEY (sender, sender_key)
    );
    """,
]


class Crypto(Protocol):
    """What the holder needs from the encryption library."""

    def decrypt(self, room_id: str, raw: dict[str, Any]) -> dict[str, Any] | None:
        """The decrypted event (client-server JSON, ``event_id`` and ``sender`` kept), or
        None while its key is missing or it cannot be decrypted."""

    async def request_key(self, room_id: str, raw: dict[str, Any]) -> bool:
        """Ask for the room key of ``raw``; False when it was not sent."""


Notify = Callable[[str, Message, str], Awaitable[str]]  # (room_id, message, txn_id) -> event id


@dataclass(frozen=True, slots=True)
class Released:
    """A held event that could be decrypted: hand ``source`` to the core as from ``room_id``,
    then call :meth:`Undecryptable.handled`."""

    room_id: str
    event_id: str
    source: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Held:
    event_id: str
    room_id: str
    sender: str
    sender_key: str
    session_id: str
    source: dict[str, Any]
    received_at: int


class Undecryptable:
    """Holds, retries and finally gives up on one bot account's undecryptable events."""

    def __init__(
        self,
        db: Database,
        user_id: str,
        crypto: Crypto,
        notify: Notify,
        clock: Clock,
        timeout: float = DEFAULT_TIMEOUT_S,
        room_cap: int = ROOM_CAP,
    ):
        self.user_id = user_id
        self._db = db
        self._crypto = crypto
        self._notify = notify
        self._clock = clock
        self._timeout_ms = int(timeout * 1000)
        self._room_cap = room_cap
        self._started_at = ms(clock.now())
        self._released: set[str] = set()  # handed out, not yet handled: never twice in a run
        self._started = False  # the tables may not exist before start()

    async def start(self) -> list[Released]:
        """Create the tables, then retry whatever was held when the bot last stopped: keys may
        have reached the store meanwhile. Every event still held gets a full timeout from now,
        since the keys for it may be waiting in the first sync."""
        await self._db.migrate(OWNER, MIGRATIONS)
        self._started, self._started_at = True, ms(self._clock.now())
        released = await self.retry()
        held = await self._db.fetchval("SELECT COUNT(*) FROM core_undecryptable_held")
        if held:
            log.info("%d undecryptable events still waiting for their keys", held)
        return released

    # -- from the sync batch -------------------------------------------------------------------
    async def hold(self, room_id: str, raw: dict[str, Any]) -> Released | None:
        """An ``m.room.encrypted`` event nio could not decrypt (a ``MegolmEvent``'s ``source``,
        or a raw one paged back over a gap). Returns it decrypted when its key is already there;
        otherwise keeps it until its key arrives or the timeout. Call before the sync position
        is saved."""
        held = _parse(room_id, raw)
        if held is None:
            log.info("ignored an encrypted event in %s that is not a megolm message", room_id)
            return None
        if held.sender == self.user_id:
            return None  # our own, from a device whose store is gone: nothing to ask anyone
        decrypted = self._crypto.decrypt(room_id, raw)
        if decrypted is not None:
            return Released(room_id, held.event_id, decrypted)
        now = ms(self._clock.now())
        async with self._db.transaction():
            await self._db.execute(
                "INSERT INTO core_undecryptable_held (event_id, room_id, sender, sender_key, "
                "session_id, source, received_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(event_id) DO NOTHING",
                (
                    held.event_id,
                    room_id,
                    held.sender,
                    held.sender_key,
                    held.session_id,
                    json.dumps(raw),
                    now,
                ),
            )
            dropped = await self._drop_over_cap(room_id)
            asked = await self._db.execute_rowcount(
                "INSERT INTO core_undecryptable_asked (room_id, session_id, asked_at) "
                "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (room_id, held.session_id, now),
            )
        if dropped:
            log.warning(
                "dropped %d undecryptable events in %s: more than %d were waiting for keys",
                dropped,
                room_id,
                self._room_cap,
            )
        if asked:
            await self._request_key(room_id, raw)
        return None

    async def _drop_over_cap(self, room_id: str) -> int:
        """Keep at most the room's cap, dropping the oldest of whoever has the most held there:
        one sender's flood of garbage pushes out only their own."""
        count = await self._db.fetchval(
            "SELECT COUNT(*) FROM core_undecryptable_held WHERE room_id = ?", (room_id,)
        )
        over = int(count) - self._room_cap
        if over <= 0:
            return 0
        top = await self._db.fetchval(
            "SELECT sender FROM core_undecryptable_held WHERE room_id = ? GROUP BY sender "
            "ORDER BY COUNT(*) DESC, MIN(received_at) LIMIT 1",
            (room_id,),
        )
        return await self._db.execute_rowcount(
            "DELETE FROM core_undecryptable_held WHERE event_id IN (SELECT event_id FROM "
            "core_undecryptable_held WHERE room_id = ? AND sender = ? "
            "ORDER BY received_at, rowid LIMIT ?)",
            (room_id, top, over),
        )

    async def _request_key(self, room_id: str, raw: dict[str, Any]) -> None:
        try:
            sent = await self._crypto.request_key(room_id, raw)
        except TransportError as exc:
            sent = False
            log.warning("could not ask for a room key in %s: %s", room_id, exc)
        if sent:
            log.info("asked for a missing room key in %s", room_id)

    # -- keys arrived --------------------------------------------------------------------------
    async def retry(self, sessions: Iterable[tuple[str, str]] | None = None) -> list[Released]:
        """Try the held events again: those of the given ``(room_id, session_id)`` pairs (the
        room keys a sync brought), or all of them. Returns those that now decrypt, still held
        until :meth:`handled`, so a crash before the core has them loses nothing."""
        if sessions is None:
            rows = await self._db.fetchall(
                "SELECT * FROM core_undecryptable_held ORDER BY received_at, rowid"
            )
        else:
            rows = []
            for room_id, session_id in sorted(set(sessions)):
                rows += await self._db.fetchall(
                    "SELECT * FROM core_undecryptable_held WHERE room_id = ? AND session_id = ? "
                    "ORDER BY received_at, rowid",
                    (room_id, session_id),
                )
        released = []
        for row in rows:
            held = _from_row(row)
            readable = self._try(held)
            if readable is not None:
                released.append(readable)
        if released:
            log.info("%d held encrypted events could be read now", len(released))
        return released

    def _try(self, held: _Held) -> Released | None:
        if held.event_id in self._released:
            return None
        decrypted = self._crypto.decrypt(held.room_id, held.source)
        if decrypted is None:
            return None
        self._released.add(held.event_id)
        return Released(held.room_id, held.event_id, decrypted)

    async def handled(self, released: Iterable[Released]) -> None:
        """The core has these events: stop holding them."""
        ids = [each.event_id for each in released]
        await self._db.executemany(
            "DELETE FROM core_undecryptable_held WHERE event_id = ?", [(i,) for i in ids]
        )
        self._released.difference_update(ids)

    # -- timeouts ------------------------------------------------------------------------------
    async def seconds_to_tick(self) -> float | None:
        """How soon :meth:`tick` has an event to give up on (0 when one is overdue), or None
        when nothing is held (or before :meth:`start`). The sync loop waits no longer than
        this, so in a quiet room the notice still comes at the timeout, not a whole long-poll
        later."""
        if not self._started:
            return None
        oldest = await self._db.fetchval("SELECT MIN(received_at) FROM core_undecryptable_held")
        if oldest is None:
            return None
        due = max(int(oldest), self._started_at) + self._timeout_ms
        return max(due - ms(self._clock.now()), 0) / 1000

    async def tick(self) -> list[Released]:
        """Give up on events held longer than the timeout: one last try (returned like
        :meth:`retry`), then one notice per person and device not yet told, and drop them."""
        now = ms(self._clock.now())
        cutoff = now - self._timeout_ms
        await self._db.execute(
            "DELETE FROM core_undecryptable_told WHERE told_at < ?",
            (now - TOLD_KEEP_DAYS * 86_400_000,),
        )
        await self._db.execute(
            "DELETE FROM core_undecryptable_asked WHERE asked_at < ? AND NOT EXISTS (SELECT 1 "
            "FROM core_undecryptable_held h WHERE h.room_id = core_undecryptable_asked.room_id "
            "AND h.session_id = core_undecryptable_asked.session_id)",
            (now - TOLD_KEEP_DAYS * 86_400_000,),
        )
        if self._started_at > cutoff:
            return []  # just started: the keys may still be in the first syncs
        rows = await self._db.fetchall(
            "SELECT * FROM core_undecryptable_held WHERE received_at <= ? "
            "ORDER BY received_at, rowid",
            (cutoff,),
        )
        released: list[Released] = []
        overdue: dict[tuple[str, str], list[_Held]] = {}
        for row in rows:
            held = _from_row(row)
            if held.event_id in self._released:
                continue  # read already, on its way to the core
            readable = self._try(held)
            if readable is not None:
                released.append(readable)
            else:
                overdue.setdefault((held.sender, held.sender_key), []).append(held)
        for (sender, sender_key), events in overdue.items():
            if not await self._tell(sender, sender_key, events[0]):
                continue  # the homeserver is unreachable: try again at the next tick
            await self._db.executemany(
                "DELETE FROM core_undecryptable_held WHERE event_id = ?",
                [(each.event_id,) for each in events],
            )
            log.info(
                "gave up on %d encrypted events in %s whose keys never came",
                len(events),
                events[0].room_id,
            )
        return released

    async def _tell(self, sender: str, sender_key: str, first: _Held) -> bool:
        """Tell ``sender`` once per device; False when the notice could not be sent yet."""
        told = await self._db.fetchval(
            "SELECT 1 FROM core_undecryptable_told WHERE sender = ? AND sender_key = ?",
            (sender, sender_key),
        )
        if told:
            return True
        message = Message(
            NOTICE.format(sender=sender),
            mentions=(sender,),
            reply_to=first.event_id,
            thread_root=_thread_root(first.source),
        )
        try:
            await self._notify(first.room_id, message, notice_txn_id(sender, sender_key))
        except TransportError as exc:
            log.warning("could not say a message was unreadable in %s: %s", first.room_id, exc)
            if not exc.errcode:
                return False
            # Refused (not allowed to speak there, room gone): retrying will not help.
        await self._db.execute(
            "INSERT INTO core_undecryptable_told (sender, sender_key, told_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (sender, sender_key, ms(self._clock.now())),
        )
        return True

    # -- personal data -------------------------------------------------------------------------
    async def forget(self, user_id: str) -> int:
        """Drop everything held or recorded about ``user_id`` (``!forget me``), also when
        encryption is off now (and :meth:`start` never ran) but was on before."""
        await self._db.migrate(OWNER, MIGRATIONS)
        removed = 0
        for table in ("core_undecryptable_held", "core_undecryptable_told"):
            removed += await self._db.execute_rowcount(
                f"DELETE FROM {table} WHERE sender = ?", (user_id,)
            )
        return removed


def notice_txn_id(sender: str, sender_key: str) -> str:
    """The same for a person and device every time, so a replayed notice is dropped."""
    digest = hashlib.sha256(f"{sender}\n{sender_key}".encode()).hexdigest()[:32]
    return f"cbundecryptable.{digest}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _parse(room_id: str, raw: dict[str, Any]) -> _Held | None:
    """The fields a held event needs, or None for anything that is not a megolm message."""
    content = raw.get("content")
    if not isinstance(content, dict) or content.get("algorithm") != MEGOLM:
        return None
    event_id, sender = _text(raw.get("event_id")), _text(raw.get("sender"))
    session_id, sender_key = _text(content.get("session_id")), _text(content.get("sender_key"))
    if not (event_id and sender and session_id and sender_key and content.get("ciphertext")):
        return None
    return _Held(event_id, room_id, sender, sender_key, session_id, raw, 0)


def _from_row(row: Any) -> _Held:
    return _Held(
        row["event_id"],
        row["room_id"],
        row["sender"],
        row["sender_key"],
        row["session_id"],
        json.loads(row["source"]),
        row["received_at"],
    )


def _thread_root(raw: dict[str, Any]) -> str | None:
    """The thread an encrypted event is in: ``m.relates_to`` stays outside the ciphertext."""
    relation = (raw.get("content") or {}).get("m.relates_to")
    if isinstance(relation, dict) and relation.get("rel_type") == "m.thread":
        root = relation.get("event_id")
        return root if isinstance(root, str) and root else None
    return None


def room_keys(response: SyncResponse) -> list[tuple[str, str]]:
    """The ``(room_id, session_id)`` of every room key a sync brought, for
    :meth:`Undecryptable.retry`. nio has put them in its store by the time it returns the
    response (a forwarded key only if it accepted it)."""
    return [
        (event.room_id, event.session_id)
        for event in response.to_device_events
        if isinstance(event, (RoomKeyEvent, ForwardedRoomKeyEvent))
    ]


class NioCrypto:
    """:class:`Crypto` over a nio client with encryption on."""

    def __init__(self, client: AsyncClient):
        self._client = client

    def _megolm(self, room_id: str, raw: dict[str, Any]) -> MegolmEvent | None:
        event = MegolmEvent.from_dict(raw)
        if not isinstance(event, MegolmEvent):
            return None
        event.room_id = room_id
        return event

    def decrypt(self, room_id: str, raw: dict[str, Any]) -> dict[str, Any] | None:
        event = self._megolm(room_id, raw)
        if event is None:
            return None
        try:
            decrypted = self._client.decrypt_event(event)
        except EncryptionError:
            return None
        if isinstance(decrypted, (BadEvent, UnknownBadEvent)):
            return None
        source = dict(decrypted.source)
        source.setdefault("event_id", event.event_id)
        source.setdefault("sender", event.sender)
        return source

    async def request_key(self, room_id: str, raw: dict[str, Any]) -> bool:
        """nio sends ``m.room_key_request`` to the bot's own other devices only, and takes a
        forwarded key only from one of them that is verified; the sender's late ``m.room_key``
        is what usually unlocks a held event. nio remembers its requests in its store."""
        event = self._megolm(room_id, raw)
        if event is None or event.session_id in self._client.outgoing_key_requests:
            return False
        try:
            response = await self._client.request_room_key(event)
        except LocalProtocolError:  # already asked (another event of the session)
            return False
        except NETWORK_ERRORS as exc:
            raise TransportError(f"homeserver unreachable: {exc or type(exc).__name__}") from exc
        return isinstance(response, RoomKeyRequestResponse)
