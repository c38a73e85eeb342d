"""Posting the weekly digests exactly once: a tick each minute finds the rooms whose slot fell
since the last tick, claims room+week in the database and, in the same transaction, promises
the digest to the engine's outbox (``ctx.effects``), which carries it out.

* The digest is a composed effect: written when it goes out (the week as it stands then), so
  a crash or an outage between the claim and the send loses nothing and sends nothing twice
  (the outbox keeps the promise until it is done, under one transaction id).
* It expires a week after its slot: once the next one is due, this week's is no news, and the
  outbox gives it up instead of posting it late.
* The last tick's time is stored, so after downtime the first tick sees every slot that fell
  meanwhile and posts the room's latest one, marked late (an older missed week is not posted
  once the next one is due).
* Many rooms due at the same minute go out through one rollout pacer on top of the per-room
  pacer, so neither a room nor the homeserver is flooded.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from civicbot_plugins.digest.compose import Composer, TemplateProblem
from civicbot_plugins.digest.counts import WeekCounter
from civicbot_plugins.digest.service import WEEK, latest_slot, week_key
from civicbot_plugins.digest.store import KEEP_COUNTS_S, DigestStore

from civicbot.api import Composed, DirectMessage, NotYet, Say, SendPacer

log = logging.getLogger("civicbot.plugins.digest")
LATE_AFTER = timedelta(minutes=15)
ROLLOUT_BURST = 10
LAST_TICK = "last_tick"


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


class DigestRunner:
    def __init__(self, ctx: Any, store: DigestStore, counter: WeekCounter, composer: Composer):
        self.ctx = ctx
        self.store = store
        self.counter = counter
        self.composer = composer
        rate = ctx.default_config.rollout_per_second
        self.rollout = SendPacer(burst=ROLLOUT_BURST, per_second=rate)
        self.last_tick: datetime | None = None
        self._reported: set[tuple[str, str]] = set()  # template problems logged once each
        # One look at a time: the first (at catch-up) may still be rolling out 1,000 digests
        # when the repeating one comes round, and it would re-send claims still in flight.
        self._one_at_a_time = asyncio.Lock()

    def register(self) -> None:
        """In ``setup()``: how the outbox makes a digest when it carries one out (promises
        left from before a stop are carried out at the catch-up, before :meth:`start`)."""
        self.ctx.effects.composer("room", self._compose_room)
        self.ctx.effects.composer("personal", self._compose_personal)
        self.ctx.effects.on_done(self._done)

    async def start(self, now: datetime) -> None:
        stored = await self.store.get_state(LAST_TICK)
        if stored is None:  # first start ever: nothing is overdue
            await self.store.set_state(LAST_TICK, _ts(now))
            stored = _ts(now)
        self.last_tick = datetime.fromtimestamp(stored, UTC)

    async def tick(self, now: datetime) -> None:
        """Post every digest due since the last tick (and any claimed but never sent)."""
        async with self._one_at_a_time:
            await self._tick(now)

    async def _tick(self, now: datetime) -> None:
        since = self.last_tick or now
        # A slot is due when since < slot <= now: none is when no time has passed (the first
        # start ever, a second look in the same instant), so no room's settings are read then
        # (2,000 rooms' were a tenth of a city's first start).
        if since < now:
            for room_id in await self.ctx.rooms.joined_rooms():
                try:
                    await self._room(room_id, since, now)
                except Exception:
                    log.exception("the digest of %s failed", room_id)
            await self._personal(since, now)
        self.last_tick = now
        await self.store.set_state(LAST_TICK, _ts(now))
        await self.store.prune(_ts(now) - KEEP_COUNTS_S)

    async def _room(self, room_id: str, since: datetime, now: datetime) -> None:
        config = await self.ctx.config(room_id)
        if not config.enabled:
            return
        zone = await self.ctx.timezone(room_id)
        slot = latest_slot(config.weekday, *config.clock, zone, now)
        if not since < slot <= now or not await self.is_group_room(room_id):
            return
        week = week_key(slot, zone)
        late = now - slot > LATE_AFTER
        key = f"digest:{room_id}:{week}"
        made = {"room": room_id, "week": week, "due": _ts(slot), "late": late}
        async with self.ctx.db.transaction():
            if not await self.store.claim(room_id, week, _ts(slot), _ts(now), late):
                return
            await self._promise(key, "room", made)
        await self.ctx.effects.carry_out(key)

    async def _promise(self, key: str, composer: str, made: dict[str, Any]) -> bool:
        """Promise one digest to the outbox, made by ``composer`` when it goes out and given
        up a week after it was due (``made["due"]``): by then the next one is. Returns whether
        it was new."""
        due = datetime.fromtimestamp(int(made["due"]), UTC)
        return await self.ctx.effects.promise(key, Composed(composer, made), expires=due + WEEK)

    async def _compose_room(self, args: dict[str, Any]) -> Say | None:
        room_id, week = str(args["room"]), str(args["week"])
        due = datetime.fromtimestamp(int(args["due"]), UTC)
        await self.counter.flush()  # the numbers include the last few seconds
        try:
            rendered = await self.composer.room(room_id, due, late=bool(args["late"]))
        except TemplateProblem as exc:
            # Kept: once the operator fixes the template and restarts, it goes out (late) if
            # its week is not over. Logged once per room and week, not every minute.
            if (room_id, week) not in self._reported:
                self._reported.add((room_id, week))
                log.error(
                    "the digest of %s for %s was not posted, its template is broken: %s",
                    room_id, week, exc,
                )  # fmt: skip
            raise NotYet("its template is broken") from None
        if rendered is None:  # an empty week in a room that asked for nothing then
            return None
        await self.rollout.wait("all rooms")
        return Say(room_id, rendered.text, rendered.html)

    async def _done(self, key: str, event_id: str) -> None:
        """In the transaction that marks a digest done (or given up, with no event)."""
        kind, _, rest = key.partition(":")
        who, _, week = rest.rpartition(":")
        if kind == "digest":
            await self.store.sent(who, week, event_id)
        elif kind == "personal":
            await self.store.personal_sent(who, week, event_id)

    async def is_group_room(self, room_id: str) -> bool:
        """A room of people, not a DM (two members) nor a space (which has no timeline)."""
        if len(await self.ctx.rooms.joined_members(room_id)) <= 2:
            return False
        create = await self.ctx.rooms.state_event(room_id, "m.room.create") or {}
        return create.get("type") != "m.space"

    # -- personal digests, on the operator's default day and time ------------------------------
    async def _personal(self, since: datetime, now: datetime) -> None:
        config = self.ctx.default_config
        zone = self.ctx.default_zone
        slot = latest_slot(config.weekday, *config.clock, zone, now)
        if not since < slot <= now:
            return
        week = week_key(slot, zone)
        for user_id in await self.store.subscribers():
            key = f"personal:{user_id}:{week}"
            made = {"user": user_id, "week": week, "due": _ts(slot)}
            async with self.ctx.db.transaction():
                if not await self.store.claim_personal(user_id, week, _ts(now)):
                    continue
                await self._promise(key, "personal", made)
            await self.ctx.effects.carry_out(key)

    async def _compose_personal(self, args: dict[str, Any]) -> DirectMessage | None:
        user_id, week = str(args["user"]), str(args["week"])
        slot = datetime.fromtimestamp(int(args["due"]), UTC)
        try:
            rendered = await self.composer.personal(user_id, slot, self.ctx.default_zone)
        except TemplateProblem as exc:
            if (user_id, week) not in self._reported:
                self._reported.add((user_id, week))
                log.error("a personal digest was not sent, its template is broken: %s", exc)
            raise NotYet("its template is broken") from None
        if rendered is None:
            return None
        await self.rollout.wait("all rooms")
        return DirectMessage(user_id, rendered.text, rendered.html)

    async def adopt_unsent(self) -> None:
        """Claims an earlier version left unsent (it sent them itself): promised now, to the
        outbox, which gives up those whose week is over."""
        for claim in await self.store.unsent():
            key = f"digest:{claim.room_id}:{claim.week}"
            made = {"room": claim.room_id, "week": claim.week, "due": claim.due_at,
                    "late": claim.late}  # fmt: skip
            if await self._promise(key, "room", made):
                await self.ctx.effects.carry_out(key)
        for user_id, week, claimed_at in await self.store.unsent_personal():
            key = f"personal:{user_id}:{week}"
            made = {"user": user_id, "week": week, "due": claimed_at}
            if await self._promise(key, "personal", made):
                await self.ctx.effects.carry_out(key)
