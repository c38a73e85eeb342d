"""Effects a plugin promises, carried out exactly once: the outbox.

A plugin that changes its state and promises something to a person (a notice, a DM, a room,
a file) must not lose the promise if the process dies between the two, nor keep it twice.
So the promise is a row of ``core_effects`` written **in the same transaction** as the state
change, and the engine carries it out until it is done:

    async with self.ctx.db.transaction():
        await self.store.mark_expired(post.id)                          # the state change
        await self.ctx.effects.promise(f"expired:{post.id}", DirectMessage(poster, text))
    await self.ctx.effects.carry_out(f"expired:{post.id}")              # now, or on a retry

Every step is idempotent, whatever instant the process dies (each instant is a named crash
point of :mod:`civicbot.failpoints`, proved in ``tests/integration/test_once.py``):

* a message or file goes out with a transaction id derived from the effect's key, so a send
  repeated after a crash is dropped by the homeserver;
* a room is made with an intent state event (``org.civicbot.intent``, its content the
  effect's key): a retry of an effect that may already have made its room looks for that
  room among the rooms the bot is in before making one;
* an effect is marked done (and its payload, which may name a person, wiped) only after it
  has happened; what is not done is tried again at start and every minute after.

A refusal no retry can fix (the bot is not in the room any more) drops the effect with a
warning; anything else (an outage, a send that gave up after its deadline) leaves it pending.

Two more shapes cover what a plugin cannot write down in full when it changes its state:

* an effect promised with ``expires=`` (a reminder before a meeting, a week's digest) is given
  up, not carried out, once the bot's clock reaches that moment: it is marked done with no
  result (``on_done`` hears ``""``), so a late retry never says what is no longer news;
* a :class:`Composed` effect is made only when it is carried out, by a composer the plugin
  registers (``ctx.effects.composer(name, fn)``): what it says depends on the moment it goes
  out (the week so far, "this reminder is late"). The composer returns the effect to carry
  out (a :class:`Say`, :class:`DirectMessage` or :class:`DirectFile`), or None for nothing to
  say; one that raises leaves the promise pending, tried again like an outage (raise
  :class:`NotYet` when the reason is known and already told, to keep the log quiet).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from civicbot import failpoints
from civicbot.core.events import Message, notice_edit
from civicbot.core.outgoing import Outgoing, txn_key
from civicbot.policy.limits import SendPacer
from civicbot.storage.database import Database
from civicbot.transport import INTENT_TYPE, Transport, TransportError

log = logging.getLogger(__name__)

DONE_RETENTION_S = 14 * 24 * 3600


@dataclass(frozen=True)
class Say:
    """A message in a room. ``mentions`` are the people it is for: they are notified (as
    ``Message.notify``); with nobody named it is a silent notice."""

    room_id: str
    text: str
    html: str | None = None
    mentions: tuple[str, ...] = ()
    thread_root: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True)
class DirectMessage:
    """A message in the bot's direct chat with ``user_id`` (made when there is none); it
    notifies them, as ``ctx.dm`` does."""

    user_id: str
    text: str
    html: str | None = None


@dataclass(frozen=True)
class DirectFile:
    """A file in the bot's direct chat with ``user_id``."""

    user_id: str
    data: bytes
    filename: str
    content_type: str = "application/json"


@dataclass(frozen=True)
class RoomNotice:
    """A notice posted in a room a :class:`NewRoom` effect makes, once it is made."""

    text: str
    html: str | None = None
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewRoom:
    """An invite-only room with exactly the bot and ``invite``, made once, then ``then`` posted
    in it. The effect's result is the room's id."""

    name: str
    invite: tuple[str, ...]
    then: tuple[RoomNotice, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Edit:
    """An edit (``m.replace``) of the bot's own post ``event_id`` in ``room_id`` to ``text``:
    what :mod:`civicbot.core.posts` leaves here when the homeserver is away, so a post is
    brought up to date once it is back rather than left saying what is no longer so."""

    room_id: str
    event_id: str
    text: str
    html: str | None = None


@dataclass(frozen=True)
class Composed:
    """An effect made when it is carried out: the owning plugin's composer ``name`` is called
    with ``args`` (JSON: strings, numbers, lists, dicts) and returns what to carry out, or
    None when there is nothing to say. Every try of one promise goes out under the same
    transaction id, so whatever a composer makes on a retry, the room sees it once."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


Effect = Say | DirectMessage | DirectFile | NewRoom | Edit | Composed
Made = Say | DirectMessage | DirectFile  # what a composer may make
_KINDS: dict[str, type[Any]] = {
    "say": Say,
    "dm": DirectMessage,
    "file": DirectFile,
    "room": NewRoom,
    "edit": Edit,
    "composed": Composed,
}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}
DoneCallback = Callable[[str, str], Awaitable[None]]
Composer = Callable[[dict[str, Any]], Awaitable[Made | None]]


class NotYet(Exception):
    """Raised by a composer that cannot make its effect yet (an operator's template is
    broken): the promise stays pending and is tried again, without a traceback each time."""


class ComposerMissing(Exception):
    """The plugin that promised a composed effect has not registered its composer (yet)."""


def _dump(effect: Effect) -> str:
    data = asdict(effect)
    if isinstance(effect, DirectFile):
        data["data"] = base64.b64encode(effect.data).decode()
    return json.dumps(data)


def _load(kind: str, payload: str) -> Effect:
    data = json.loads(payload)
    if kind == "file":
        data["data"] = base64.b64decode(data["data"])
    if kind == "room":
        data["invite"] = tuple(data["invite"])
        data["then"] = tuple(
            RoomNotice(n["text"], n.get("html"), tuple(n.get("mentions") or ()))
            for n in data.get("then") or ()
        )
    elif "mentions" in data:
        data["mentions"] = tuple(data["mentions"])
    effect: Effect = _KINDS[kind](**data)
    return effect


class EffectRunner:
    """The core's outbox: records promises and carries them out. One per bot."""

    def __init__(
        self,
        db: Database,
        transport: Transport,
        pacer: SendPacer,
        now: Callable[[], datetime] | None = None,
    ):
        self._db = db
        self._transport = transport
        self._pacer = pacer
        self._now = now or (lambda: datetime.now(UTC))  # the bot's clock: tests move it
        self._busy: dict[str, asyncio.Lock] = {}
        self._on_done: dict[str, DoneCallback] = {}
        self._composers: dict[tuple[str, str], Composer] = {}
        # Whether a promise may be waiting: the retry every minute reads the table only then
        # (a month of minutes on a test's clock was a month of queries).
        self._maybe_pending = True
        self.redirect: Callable[[str], Awaitable[str]] | None = None

    def composer(self, owner: str, name: str, compose: Composer) -> None:
        """Register how ``owner``'s :class:`Composed` effects named ``name`` are made."""
        self._composers[(owner, name)] = compose

    def on_done(self, owner: str, callback: DoneCallback) -> None:
        """``callback(key, result)`` runs in the transaction that marks one of ``owner``'s
        effects done (``result``: the event or room id), so what it records is never lost."""
        self._on_done[owner] = callback

    async def promise(
        self, owner: str, key: str, effect: Effect, expires: datetime | None = None
    ) -> bool:
        """Record ``effect`` under ``key`` (once: a key already promised is left alone, done
        or not). Call it inside the transaction that makes the change it belongs to. Past
        ``expires`` it is given up instead of carried out. Returns whether it was new."""
        new = await self._db.execute_rowcount(
            "INSERT OR IGNORE INTO core_effects "
            "(key, owner, kind, payload, promised_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                _full(owner, key),
                owner,
                _KIND_OF[type(effect)],
                _dump(effect),
                int(time.time()),
                int(expires.timestamp()) if expires is not None else None,
            ),
        )
        if new:
            self._maybe_pending = True
        return new > 0

    async def cancel_all(self, owner: str, prefix: str) -> None:
        """Drop every promise not yet kept whose key starts with ``prefix`` (an older edit of
        a post that a newer one overtakes)."""
        start = _full(owner, prefix)
        await self._db.execute(
            "DELETE FROM core_effects WHERE substr(key, 1, ?) = ? AND done_at IS NULL",
            (len(start), start),
        )

    async def cancel(self, owner: str, key: str) -> None:
        """Drop a promise not yet kept (e.g. the welcome of a room the bot could not join)."""
        await self._db.execute(
            "DELETE FROM core_effects WHERE key = ? AND done_at IS NULL", (_full(owner, key),)
        )

    async def result(self, owner: str, key: str) -> str | None:
        """What a kept promise gave (an event or room id); None while it is not kept."""
        row = await self._db.fetchone(
            "SELECT result, done_at FROM core_effects WHERE key = ?", (_full(owner, key),)
        )
        return str(row[0]) if row is not None and row[1] is not None and row[0] else None

    async def is_pending(self, owner: str, key: str) -> bool:
        return bool(
            await self._db.fetchval(
                "SELECT 1 FROM core_effects WHERE key = ? AND done_at IS NULL",
                (_full(owner, key),),
            )
        )

    async def carry_out(self, owner: str, key: str) -> str | None:
        """Carry out one promise now; returns its result, or None if it is not done (it stays
        pending and is tried again) or was dropped. Never raises."""
        full = _full(owner, key)
        lock = self._busy.setdefault(full, asyncio.Lock())
        try:
            async with lock:
                return await self._carry_out(full)
        except ComposerMissing as exc:
            self._maybe_pending = True
            log.warning("effect %s waits for its composer: %s", _tag(full), exc)
            return None
        except NotYet as exc:  # its composer has said why, once
            self._maybe_pending = True
            log.debug("effect %s not made yet: %s", _tag(full), exc)
            return None
        except BaseException as exc:
            # A refusal (TransportError.refused) no retry can turn into a success: dropped.
            self._maybe_pending = True
            if not isinstance(exc, Exception):
                raise  # cancelled, or the process is going down: still pending
            if isinstance(exc, TransportError) and exc.refused:
                log.warning("dropping effect %s: refused (%s)", _tag(full), exc.errcode)
                await self._db.execute(
                    "DELETE FROM core_effects WHERE key = ? AND done_at IS NULL", (full,)
                )
            elif isinstance(exc, TransportError):
                log.warning("effect %s not done yet, will try again: %s", _tag(full), exc)
            else:  # a composer's own failure: its traceback, for whoever maintains it
                log.exception("effect %s failed, will try again", _tag(full))
            return None
        finally:
            if not lock.locked():
                self._busy.pop(full, None)

    async def carry_out_pending(self) -> int:
        """Try every promise not yet kept, oldest first; returns how many were kept."""
        if not self._maybe_pending:
            return 0
        self._maybe_pending = False  # set again by a promise, or one that stays pending
        rows = await self._db.fetchall(
            "SELECT key FROM core_effects WHERE done_at IS NULL ORDER BY promised_at, rowid"
        )
        kept = 0
        for (full,) in rows:
            owner, _, key = str(full).partition(":")
            if await self.carry_out(owner, key) is not None:
                kept += 1
        return kept

    async def forget(self, user_id: str) -> int:
        """Drop every promise not yet kept that names ``user_id`` (``!forget me``): nothing is
        sent to, or about, a person who asked to be forgotten. Returns how many went."""
        rows = await self._db.fetchall(
            "SELECT key, payload FROM core_effects WHERE done_at IS NULL"
        )
        quoted = json.dumps(user_id)  # as it stands in a payload: whole, not a prefix
        naming = [str(key) for key, payload in rows if quoted in str(payload)]
        for key in naming:
            await self._db.execute(
                "DELETE FROM core_effects WHERE key = ? AND done_at IS NULL", (key,)
            )
        return len(naming)

    async def purge(self) -> None:
        cutoff = int(time.time()) - DONE_RETENTION_S
        await self._db.execute(
            "DELETE FROM core_effects WHERE done_at IS NOT NULL AND done_at < ?", (cutoff,)
        )

    async def _carry_out(self, full: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT kind, payload, tries, result, done_at, expires_at FROM core_effects "
            "WHERE key = ?",
            (full,),
        )
        if row is None:
            return None
        kind, payload, tries, result, done_at, expires_at = row
        if done_at is not None:
            return str(result or "")
        tag = _tag(full)
        if expires_at is not None and self._now().timestamp() >= expires_at:
            log.warning("gave up effect %s: its moment has passed", tag)
            await self._done(full, "")
            return ""
        failpoints.hit("effect-promised", tag)
        await self._db.execute("UPDATE core_effects SET tries = tries + 1 WHERE key = ?", (full,))
        effect: Effect | None = _load(kind, payload)
        if isinstance(effect, Composed):
            effect = await self._compose(full, effect)
            if effect is None:  # nothing to say after all
                await self._done(full, "")
                return ""
        out = Outgoing(self._transport, txn_key("effect", full), self._pacer)
        if isinstance(effect, Say):
            room_id = await self._room(effect.room_id)
            message = Message(
                effect.text,
                effect.html,
                notify=effect.mentions,  # the people it is for hear about it ("What pings you")
                thread_root=effect.thread_root if room_id == effect.room_id else None,
                reply_to=effect.reply_to if room_id == effect.room_id else None,
            )
            result = await out.message(room_id, message, may_ping_room=False)
        elif isinstance(effect, DirectMessage):
            room_id = await self._transport.direct_room(effect.user_id)
            message = Message(effect.text, effect.html, notify=(effect.user_id,))
            result = await out.message(room_id, message, may_ping_room=False)
        elif isinstance(effect, DirectFile):
            room_id = await self._transport.direct_room(effect.user_id)
            result = await out.file(room_id, effect.data, effect.filename, effect.content_type)
        elif isinstance(effect, Edit):
            message = notice_edit(effect.event_id, effect.text, effect.html)
            result = await out.message(effect.room_id, message, may_ping_room=False)
        elif isinstance(effect, NewRoom):
            result = await self._new_room(full, effect, tries, result, out)
        else:
            raise TypeError(f"not an effect to carry out: {effect!r}")
        failpoints.hit("effect-sent", tag)
        await self._done(full, str(result or ""))
        return str(result or "")

    async def _compose(self, full: str, effect: Composed) -> Made | None:
        owner = full.partition(":")[0]
        compose = self._composers.get((owner, effect.name))
        if compose is None:
            raise ComposerMissing(f"{owner} has no composer {effect.name!r}")
        made = await compose(effect.args)
        if made is not None and not isinstance(made, Say | DirectMessage | DirectFile):
            raise TypeError(f"composer {effect.name!r} made {type(made).__name__}")
        return made

    async def _new_room(
        self, full: str, effect: NewRoom, tries: int, made: str | None, out: Outgoing
    ) -> str:
        room_id = made
        if room_id is None and tries > 0:
            # An earlier try may have made the room and died before recording it.
            room_id = await self.find_intent(full)
        if room_id is None:
            room_id = await self._transport.create_private_room(
                effect.name, list(effect.invite), intent=full
            )
            failpoints.hit("effect-room-created", _tag(full))
        if made is None:
            await self._db.execute(
                "UPDATE core_effects SET result = ? WHERE key = ?", (room_id, full)
            )
        for notice in effect.then:
            message = Message(notice.text, notice.html, notify=notice.mentions)
            await out.message(room_id, message, may_ping_room=False)
        return room_id

    async def find_intent(self, full: str) -> str | None:
        """The room made for the effect ``full``, found by its intent state event."""
        for room_id in await self._transport.joined_rooms():
            try:
                state = await self._transport.state_event(room_id, INTENT_TYPE)
            except TransportError:
                continue
            if state and state.get("key") == full:
                return room_id
        return None

    async def _room(self, room_id: str) -> str:
        """Where a notice for ``room_id`` goes now: its replacement, after a room upgrade."""
        return await self.redirect(room_id) if self.redirect is not None else room_id

    async def _done(self, full: str, result: str) -> None:
        owner, _, key = full.partition(":")
        callback = self._on_done.get(owner)
        async with self._db.transaction():
            # The payload may name a person (a DM's recipient): a kept promise keeps only its
            # key and result, for the replay check.
            await self._db.execute(
                "UPDATE core_effects SET done_at = ?, result = ?, payload = '{}' WHERE key = ?",
                (int(time.time()), result, full),
            )
            if callback is not None:
                await callback(key, result)


def _full(owner: str, key: str) -> str:
    return f"{owner}:{key}"


def _tag(full: str) -> str:
    """The effect's owner and the first word of its key (``mutual_aid.intro``): what a
    failpoint and a log line name, never a person."""
    owner, _, key = full.partition(":")
    return f"{owner}.{key.split(':', 1)[0]}"


class PluginEffects:
    """One plugin's view of the outbox (``ctx.effects``): its keys are its own."""

    def __init__(self, runner: EffectRunner, owner: str):
        self._runner = runner
        self._owner = owner

    async def promise(self, key: str, effect: Effect, expires: datetime | None = None) -> bool:
        """Promise ``effect`` under ``key``, inside the transaction of the change it belongs
        to; then :meth:`carry_out` it. A key already promised is left as it is. Once the
        bot's clock reaches ``expires`` it is given up instead (``on_done`` hears ``""``)."""
        return await self._runner.promise(self._owner, key, effect, expires)

    def composer(self, name: str, compose: Composer) -> None:
        """How this plugin's :class:`Composed` effects named ``name`` are made: ``compose``
        gets the effect's ``args`` when it is carried out and returns a :class:`Say`,
        :class:`DirectMessage` or :class:`DirectFile`, or None for nothing to say. Register
        it in ``setup()``, before any is carried out."""
        self._runner.composer(self._owner, name, compose)

    async def carry_out(self, key: str) -> str | None:
        """Keep the promise now if it can be; None if it stays pending (it is retried)."""
        return await self._runner.carry_out(self._owner, key)

    async def once(self, key: str, effect: Effect, expires: datetime | None = None) -> str | None:
        """Promise and carry out an effect that goes with no state change of its own."""
        await self.promise(key, effect, expires)
        return await self.carry_out(key)

    async def result(self, key: str) -> str | None:
        return await self._runner.result(self._owner, key)

    async def is_pending(self, key: str) -> bool:
        return await self._runner.is_pending(self._owner, key)

    def on_done(self, callback: DoneCallback) -> None:
        """``callback(key, result)`` runs in the transaction that marks an effect done: the
        place to record a made room's id in your own table."""
        self._runner.on_done(self._owner, callback)
