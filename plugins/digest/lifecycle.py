"""Posting the weekly digests exactly once: a tick each minute finds the rooms whose slot fell
since the last tick, claims room+week in the database, then sends with a key made of both.

* A crash after the claim and before the send's answer leaves the claim without an event id:
  the next tick (or start) sends again with the same key, so the homeserver keeps one copy.
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
from civicbot_plugins.digest.store import KEEP_COUNTS_S, Claim, DigestStore

from civicbot.api import SendPacer, TransportError

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
        await self.counter.flush()  # the numbers include the last few seconds
        since = self.last_tick or now
        for claim in await self.store.unsent():
            await self._resend(claim, now)
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
        if await self.store.claim(room_id, week, _ts(slot), _ts(now), late):
            await self._post(Claim(room_id, week, _ts(slot), late, None))

    async def _resend(self, claim: Claim, now: datetime) -> None:
        due = datetime.fromtimestamp(claim.due_at, UTC)
        if now - due >= WEEK:  # the next one is due: this week's is no news any more
            log.warning("gave up the digest of %s for %s", claim.room_id, claim.week)
            await self.store.sent(claim.room_id, claim.week, "")
            return
        await self._post(claim)

    async def _post(self, claim: Claim) -> None:
        due = datetime.fromtimestamp(claim.due_at, UTC)
        try:
            rendered = await self.composer.room(claim.room_id, due, late=claim.late)
        except TemplateProblem as exc:
            # The claim stays: once the operator fixes the template and restarts, it goes out
            # (late) if its week is not over. Logged once per room and week, not every minute.
            if (claim.room_id, claim.week) not in self._reported:
                self._reported.add((claim.room_id, claim.week))
                log.error(
                    "the digest of %s for %s was not posted, its template is broken: %s",
                    claim.room_id, claim.week, exc,
                )  # fmt: skip
            return
        if rendered is None:  # an empty week in a room that asked for nothing then
            await self.store.sent(claim.room_id, claim.week, "")
            return
        await self.rollout.wait("all rooms")
        try:
            event_id = await self.ctx.send(
                claim.room_id, rendered, key=f"digest:{claim.room_id}:{claim.week}"
            )
        except TransportError as exc:
            log.warning("the digest of %s could not be sent yet: %s", claim.room_id, exc)
            return
        await self.store.sent(claim.room_id, claim.week, event_id)

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
            for user_id, week in await self.store.unsent_personal():
                await self._send_personal(user_id, week, slot)
            return
        week = week_key(slot, zone)
        for user_id in await self.store.subscribers():
            if await self.store.claim_personal(user_id, week, _ts(now)):
                await self._send_personal(user_id, week, slot)

    async def _send_personal(self, user_id: str, week: str, slot: datetime) -> None:
        try:
            rendered = await self.composer.personal(user_id, slot, self.ctx.default_zone)
            if rendered is None:
                await self.store.personal_sent(user_id, week, "")
                return
            room_id = await self.ctx.direct_room(user_id)
            await self.rollout.wait("all rooms")
            event_id = await self.ctx.send(
                room_id, rendered, key=f"personal:{user_id}:{week}", notify=(user_id,)
            )
        except TemplateProblem as exc:
            if (user_id, week) not in self._reported:
                self._reported.add((user_id, week))
                log.error("a personal digest was not sent, its template is broken: %s", exc)
            return
        except TransportError as exc:
            log.warning("a personal digest could not be sent yet: %s", exc)
            return
        await self.store.personal_sent(user_id, week, event_id)
