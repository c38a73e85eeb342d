"""Token buckets: a flood guard for what people send the bot, pacing for what the bot sends.

Two separate problems, two separate mechanisms:

* :class:`FloodGuard` (inbound): each person in each room, and each room as a whole, has a
  bucket of commands. Someone who empties theirs gets **one** polite notice and is then
  ignored for a cool-down; the same holds for a whole room (moderators are never held back by
  the room's bucket, so they can still act during a pile-on).
* :class:`SendPacer` (outbound): the bot's own messages to one room are paced by a bucket that
  *delays* a send until a token is free, so nothing the bot means to say is ever dropped, yet it
  never floods a room either.

Both belong to the core (:mod:`civicbot.policy.floodcontrol`), which builds them from the
``[limits]`` settings and hands the pacer to every :class:`~civicbot.core.outgoing.Outgoing`.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

MonotonicClock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]

DEFAULT_SEND_BURST = 20
DEFAULT_SENDS_PER_SECOND = 5.0
_MAX_TRACKED = 5_000  # buckets kept before idle, full ones are pruned
_PRUNE_EVERY = 60.0  # seconds: how often a large table is swept for idle buckets at most
_MAX_DECISIONS = 10_000  # event ids whose verdict is remembered


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` tokens per second."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float, now: float):
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.tokens = float(capacity)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def reserve(self, now: float) -> float:
        """Take one token now, borrowing against the future if need be; return how many seconds
        to wait before using it. Successive reservations wait successively longer, so concurrent
        senders keep their order."""
        self._refill(now)
        self.tokens -= 1.0
        if self.tokens >= 0 or self.rate <= 0:
            return 0.0
        return -self.tokens / self.rate

    def is_full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.capacity

    def resize(self, capacity: float, rate: float) -> None:
        self.capacity, self.rate = float(capacity), float(rate)
        self.tokens = min(self.tokens, self.capacity)


# -- inbound ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FloodLimits:
    """How much one person and one room may ask of the bot. A burst of 0 switches that limit
    off."""

    person_burst: int = 8
    person_per_minute: float = 20.0
    room_burst: int = 30
    room_per_minute: float = 60.0
    cooldown_seconds: float = 60.0
    # One person across every room together (the operator's): inviting the bot to many rooms
    # must not multiply what one person may ask of it.
    everywhere_burst: int = 24
    everywhere_per_minute: float = 60.0


class Verdict(Enum):
    ALLOW = "allow"
    NOTICE = "notice"  # over the limit just now: say so once, then stay quiet
    DROP = "drop"  # still cooling down: ignore


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    scope: str = ""  # "person" or "room" when not allowed
    cooldown_seconds: float = 0.0

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


ALLOWED = Decision(Verdict.ALLOW)
DROPPED = Decision(Verdict.DROP)


class _Track:
    __slots__ = ("bucket", "quiet_until")

    def __init__(self, bucket: TokenBucket):
        self.bucket = bucket
        self.quiet_until = 0.0

    def admit(self, now: float, burst: int, per_minute: float, cooldown: float) -> Verdict:
        if now < self.quiet_until:
            return Verdict.DROP
        self.bucket.resize(burst, per_minute / 60.0)
        if self.bucket.take(now):
            return Verdict.ALLOW
        self.quiet_until = now + max(cooldown, 1.0)
        return Verdict.NOTICE

    def idle(self, now: float) -> bool:
        return now >= self.quiet_until and self.bucket.is_full(now)


class FloodGuard:
    """Decides, per event, whether the bot answers its sender.

    ``limits_for(room_id)`` gives the room's :class:`FloodLimits` (rooms may set their own);
    ``exempt_from_room(room_id, user_id)`` says who the room's bucket never holds back
    (moderators). The verdict for each event is remembered, so everything the bot says about
    one event is charged once: a command let through may reply as often as it needs."""

    def __init__(
        self,
        limits_for: Callable[[str], Awaitable[FloodLimits]],
        exempt_from_room: Callable[[str, str], Awaitable[bool]],
        clock: MonotonicClock = time.monotonic,
    ):
        self._limits_for = limits_for
        self._exempt = exempt_from_room
        self._clock = clock
        self._people: dict[tuple[str, str], _Track] = {}
        self._rooms: dict[str, _Track] = {}
        # When to sweep each table next: once it outgrows its limit (then twice what is left),
        # or a minute after the last sweep. A sweep on every command once 5,000 people were
        # active made each command cost a pass over all of them.
        self._sweeps = {"people": (_MAX_TRACKED, 0.0), "rooms": (_MAX_TRACKED, 0.0)}
        self._decided: OrderedDict[str, Decision] = OrderedDict()

    def remember(self, event_id: str, decision: Decision) -> None:
        if not event_id:
            return
        self._decided[event_id] = decision
        self._decided.move_to_end(event_id)
        while len(self._decided) > _MAX_DECISIONS:
            self._decided.popitem(last=False)

    async def admit(self, room_id: str, user_id: str, event_id: str = "") -> Decision:
        """Charge one command (or one unsolicited answer) to ``user_id`` in ``room_id``."""
        earlier = self._decided.get(event_id) if event_id else None
        if earlier is not None:
            return earlier
        decision = await self._judge(room_id, user_id)
        self.remember(event_id, decision)
        return decision

    async def _judge(self, room_id: str, user_id: str) -> Decision:
        limits = await self._limits_for(room_id)
        now = self._clock()
        cooldown = limits.cooldown_seconds
        if limits.person_burst > 0:
            track = self._people.get((room_id, user_id))
            if track is None:
                track = self._people[(room_id, user_id)] = _Track(
                    TokenBucket(limits.person_burst, limits.person_per_minute / 60.0, now)
                )
            verdict = track.admit(now, limits.person_burst, limits.person_per_minute, cooldown)
            if verdict is not Verdict.ALLOW:
                return Decision(verdict, "person", cooldown)
        if limits.everywhere_burst > 0:
            track = self._people.get(("", user_id))
            if track is None:
                track = self._people[("", user_id)] = _Track(
                    TokenBucket(limits.everywhere_burst, limits.everywhere_per_minute / 60.0, now)
                )
            verdict = track.admit(
                now, limits.everywhere_burst, limits.everywhere_per_minute, cooldown
            )
            if verdict is not Verdict.ALLOW:
                return Decision(verdict, "person", cooldown)
        if limits.room_burst > 0:
            track = self._rooms.get(room_id)
            if track is None:
                track = self._rooms[room_id] = _Track(
                    TokenBucket(limits.room_burst, limits.room_per_minute / 60.0, now)
                )
            verdict = track.admit(now, limits.room_burst, limits.room_per_minute, cooldown)
            # Only when the room is over its limit is it worth asking who the sender is.
            if verdict is not Verdict.ALLOW:
                if not await self._exempt(room_id, user_id):
                    return Decision(verdict, "room", cooldown)
                if verdict is Verdict.NOTICE:
                    track.quiet_until = 0.0  # the next resident hears why, not silence
        self._prune(now)
        return ALLOWED

    def _prune(self, now: float) -> None:
        if self._sweep_due("people", len(self._people), now):
            self._people = {k: t for k, t in self._people.items() if not t.idle(now)}
            self._swept("people", len(self._people), now)
        if self._sweep_due("rooms", len(self._rooms), now):
            self._rooms = {k: t for k, t in self._rooms.items() if not t.idle(now)}
            self._swept("rooms", len(self._rooms), now)

    def _sweep_due(self, table: str, size: int, now: float) -> bool:
        limit, last = self._sweeps[table]
        return size > limit or (size > _MAX_TRACKED and now - last >= _PRUNE_EVERY)

    def _swept(self, table: str, left: int, now: float) -> None:
        self._sweeps[table] = (max(_MAX_TRACKED, 2 * left), now)


def flood_notice(decision: Decision, prefix: str = "!") -> str:
    """The one polite notice someone (or a room) gets when going over the limit."""
    pause = describe_seconds(decision.cooldown_seconds)
    if decision.scope == "room":
        return (
            f"This room is sending me more commands than I can keep up with, so I'll pause "
            f"for {pause} and then answer again. Moderators can still reach me."
        )
    return (
        f"That's a lot of commands at once! I'll stop answering yours for {pause}, then I'm "
        f"all yours again. ({prefix}help once shows everything I can do.)"
    )


def describe_seconds(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "an hour" if hours == 1 else f"{hours} hours"
    if seconds % 60 == 0:
        minutes = seconds // 60
        return "a minute" if minutes == 1 else f"{minutes} minutes"
    return f"{seconds} seconds"


# -- outbound --------------------------------------------------------------------------------
class SendPacer:
    """Paces the bot's own sends per room: a burst, then ``per_second``. Never drops a send;
    ``per_second <= 0`` switches pacing off."""

    def __init__(
        self,
        burst: int = DEFAULT_SEND_BURST,
        per_second: float = DEFAULT_SENDS_PER_SECOND,
        clock: MonotonicClock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ):
        self.burst = burst
        self.per_second = per_second
        self._clock = clock
        self._sleep = sleep
        self._rooms: dict[str, TokenBucket] = {}
        # Told of every room the bot is about to speak in (the public pages drop that room's
        # kept page: what the bot says there is what changed).
        self.on_send: Callable[[str], None] | None = None

    def configure(self, burst: int, per_second: float) -> None:
        self.burst, self.per_second = max(1, burst), per_second
        for bucket in self._rooms.values():
            bucket.resize(self.burst, per_second)

    def delay(self, room_id: str) -> float:
        """Reserve a send in ``room_id``; seconds to wait before making it."""
        if self.per_second <= 0:
            return 0.0
        now = self._clock()
        bucket = self._rooms.get(room_id)
        if bucket is None:
            if len(self._rooms) > _MAX_TRACKED:
                self._rooms = {r: b for r, b in self._rooms.items() if not b.is_full(now)}
            bucket = self._rooms[room_id] = TokenBucket(self.burst, self.per_second, now)
        return bucket.reserve(now)

    async def wait(self, room_id: str) -> None:
        if self.on_send is not None:
            self.on_send(room_id)
        delay = self.delay(room_id)
        if delay > 0:
            await self._sleep(delay)
