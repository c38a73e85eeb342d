"""A meeting's life after ``!meet``: the poll and table, fixing, deadlines and reminders.

Sends caused by a resident's command go through that command's :class:`Outgoing` (keyed by
its event); sends nobody typed are keyed by what they are for (``fixed:3``), so a step
repeated after a crash reaches the homeserver with the same transaction id and is shown once.

Reminders are exactly once: each is claimed in the ``meetings_reminders`` ledger and, in the
same transaction, promised to the engine's outbox (``ctx.effects``): one effect for the room
and one per person going, each written when it goes out ("starts in 40 minutes") and given
up once the meeting has started. The outbox keeps them through crashes and outages, and the
room's marks its claim sent. One job per meeting waits for its next reminder (not one per
reminder: 10,000 reminders are 1,000 jobs).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from civicbot_plugins.meetings import render
from civicbot_plugins.meetings.models import CANCELLED, FIXED, PROPOSED, Meeting
from civicbot_plugins.meetings.personal import has_person
from civicbot_plugins.meetings.records import RecordStore
from civicbot_plugins.meetings.reminders import (
    Delivery,
    Reminder,
    late_note,
    parse_reminder_key,
    pending_reminders,
    plan_due,
)
from civicbot_plugins.meetings.service import (
    Best,
    ballot_from_poll,
    ballot_from_slot_poll,
    best_slot,
    tally,
)
from civicbot_plugins.meetings.store import MeetingStore

from civicbot.api import (
    Composed,
    DirectMessage,
    Event,
    EventKind,
    Message,
    Outgoing,
    Say,
    TransportError,
    describe_delta,
    notice_replacement,
    poll_response_answers,
    send_notice,
)

if TYPE_CHECKING:
    from civicbot_plugins.meetings.config import MeetingsConfig

    from civicbot.api import JobContext, PluginContext

log = logging.getLogger(__name__)
HORIZON_TICK = timedelta(hours=6)  # re-arm reminders that come within ARM_HORIZON


class MeetingRunner:
    """Owns the meetings plugin's jobs and the messages nobody typed."""

    def __init__(
        self, ctx: PluginContext[MeetingsConfig], store: MeetingStore, records: RecordStore
    ):
        self.ctx = ctx
        self.store = store
        self.records = records
        self._locks: dict[int, asyncio.Lock] = {}
        self._caught_up = False

    def lock(self, meeting_id: int) -> asyncio.Lock:
        return self._locks.setdefault(meeting_id, asyncio.Lock())

    async def calendar_file(
        self, meeting: Meeting, now: datetime, cancelled: bool = False
    ) -> tuple[bytes, str]:
        """The meeting's .ics, its room link routed through the room's servers (``via=``)."""
        link = await self.ctx.link(meeting.room_id)
        return render.calendar_file(meeting, self.server, now, cancelled, room_link=link)

    @property
    def server(self) -> str:
        return self.ctx.rooms.bot_user_id.partition(":")[2] or "civicbot.invalid"

    def stand_in(self, meeting_id: int, person: str) -> str:
        """A forgotten person's name in one meeting: keyed, so if they answer again their new
        answer replaces the old one instead of counting twice (and nobody holding only the
        database can tell who it was)."""
        return "anon:" + self.ctx.keyed_hash(f"meetings:{meeting_id}:{person}")[:16]

    async def person(self, meeting_id: int, user_id: str) -> str:
        """Who ``user_id`` is in this meeting's tables: their stand-in if they were forgotten
        and had answered, else themselves."""
        alias = self.stand_in(meeting_id, user_id)
        return alias if await has_person(self.ctx.db, meeting_id, alias) else user_id

    async def zone_of(self, user_id: str, room_id: str) -> ZoneInfo:
        """A person's own zone (``!tz``) if set, else the room's."""
        name = await self.records.user_zone(user_id)
        return ZoneInfo(name) if name else await self.ctx.timezone(room_id)

    # -- start-up ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Re-arm deadlines and reminders from the tables. Overdue ones wait for
        :meth:`caught_up`, so a ``!meet cancel`` typed while the bot was down is read first."""
        # Reminders go through the outbox: made when they go out, given up once the meeting
        # has started (promises left from before a stop are kept at the catch-up).
        self.ctx.effects.composer("reminder", self._compose_reminder)
        self.ctx.effects.on_done(self._reminder_done)
        now = self.ctx.clock.now()
        sent = await self.records.reminder_keys()
        offsets: dict[str, tuple[timedelta, ...]] = {}
        for meeting in await self.store.active(now):
            if meeting.room_id not in offsets:
                offsets[meeting.room_id] = (await self.ctx.config(meeting.room_id)).offsets
            self._arm_pending(meeting, now, sent, offsets[meeting.room_id])
        for meeting in await self.store.open_decisions():
            if meeting.decide_by is not None and meeting.decide_by > now:
                self.arm_decision(meeting)
        self.ctx.jobs.every("horizon", HORIZON_TICK, self._horizon_job)

    async def caught_up(self) -> None:
        self._caught_up = True
        now = self.ctx.clock.now()
        for key, meeting_id, delivery in await self.records.unfinished_reminders():
            await self._adopt(key, meeting_id, Delivery(delivery))
        for meeting in await self.store.active(now):
            if meeting.announce_event_id is None and not meeting.fixed_by:
                await self._finish_auto_fix(meeting)
        await self.rearm_all(now)
        for meeting in await self.store.decisions_due(now):
            self.arm_decision(meeting)
        for meeting in await self.store.proposed_all():
            await self.recount(meeting)

    async def rearm_all(self, now: datetime) -> None:
        sent = await self.records.reminder_keys()
        for meeting in await self.store.active(now):
            offsets = (await self.ctx.config(meeting.room_id)).offsets
            self._arm_pending(meeting, now, sent, offsets)

    async def _horizon_job(self, job: JobContext[MeetingsConfig]) -> None:
        await self.rearm_all(job.now)

    # -- the availability table ----------------------------------------------------------------
    async def table_text(self, meeting: Meeting) -> Any:
        ballots = await self.store.ballots(meeting.id)
        table = tally(meeting.slots, ballots)
        zone = await self.ctx.timezone(meeting.room_id)
        names = (await self.ctx.config(meeting.room_id)).table_names
        now = self.ctx.clock.now()
        return self.ctx.render("table", **render.table_values(meeting, table, zone, now, names))

    async def update_table(self, meeting: Meeting, out: Outgoing) -> None:
        """Edit the table message in place (``m.replace``) with the latest answers."""
        if not meeting.table_event_id:
            return
        rendered = await self.table_text(meeting)
        extra = notice_replacement(meeting.table_event_id, rendered.text, rendered.html)
        message = Message(f"* {rendered.text}", None, extra=extra)
        await out.message(meeting.room_id, message, may_ping_room=False)

    async def on_response(self, event: Event, out: Outgoing) -> None:
        """A tap on one time's poll sets the answer for that time; a tap on a (older) poll of
        all the times makes the selected times "yes" and the rest "no"."""
        relation = event.relates_to or {}
        if relation.get("rel_type") != "m.reference" or event.sender == self.ctx.rooms.bot_user_id:
            return
        start_id = str(relation.get("event_id", ""))
        found = await self.store.by_slot_poll(start_id)
        if found is not None:
            meeting, slot = found
            if meeting.room_id != event.room_id or meeting.state != PROPOSED:
                return
            answer = ballot_from_slot_poll(poll_response_answers(event.content), slot)
            person = await self.person(meeting.id, event.sender)
            if await self.store.record_ballot(meeting.id, person, answer, event.ts, "poll"):
                await self.update_table(meeting, out)
            return
        meeting = await self.store.by_poll_event(start_id)
        if meeting is None or meeting.room_id != event.room_id or meeting.state != PROPOSED:
            return
        ballot = ballot_from_poll(poll_response_answers(event.content), render.answer_ids(meeting))
        person = await self.person(meeting.id, event.sender)
        if await self.store.record_ballot(meeting.id, person, ballot, event.ts, "poll"):
            await self.update_table(meeting, out)

    async def recount(self, meeting: Meeting) -> None:
        """After a restart: poll taps that arrived while we were away (an older tap never
        replaces a newer answer: see ``record_ballot``)."""
        slot_polls = await self.store.slot_polls(meeting.id)
        polls = {event_id: slot for slot, event_id in slot_polls.items()}
        if not polls and meeting.poll_event_id:
            polls = {meeting.poll_event_id: 0}  # one poll of all the times (older meetings)
        changed = False
        for poll_id, slot in polls.items():
            try:
                events = await self.ctx.rooms.relations(meeting.room_id, poll_id, "m.reference")
            except TransportError as exc:
                log.warning("could not recount %s: %s", meeting.label, exc)
                return
            for event in events:
                if event.kind is not EventKind.POLL_RESPONSE or not event.content:
                    continue
                if event.room_id != meeting.room_id or event.sender == self.ctx.rooms.bot_user_id:
                    continue
                answers = poll_response_answers(event.content)
                ballot = (
                    ballot_from_slot_poll(answers, slot)
                    if slot
                    else ballot_from_poll(answers, render.answer_ids(meeting))
                )
                person = await self.person(meeting.id, event.sender)
                changed |= await self.store.record_ballot(
                    meeting.id, person, ballot, event.ts, "poll"
                )
        if changed:
            await self.update_table(meeting, self.ctx.outgoing("recount", str(meeting.id)))

    # -- fixing --------------------------------------------------------------------------------
    def arm_decision(self, meeting: Meeting) -> None:
        assert meeting.decide_by is not None
        self.ctx.jobs.at(
            f"decide:{meeting.id}", meeting.decide_by, functools.partial(self._decide, meeting.id)
        )

    async def _decide(self, meeting_id: int, job: JobContext[MeetingsConfig]) -> None:
        """At the ``decide by`` deadline: fix the best time (a tie goes to the earlier one)."""
        if not self._caught_up:
            return  # caught_up() arms it again once the backlog has been read
        async with self.lock(meeting_id):
            meeting = await self.store.get(meeting_id)
            if meeting is None or meeting.state != PROPOSED:
                return
            table = tally(meeting.slots, await self.store.ballots(meeting.id))
            best = best_slot(table)
            if best is None:
                text = (
                    f"Nobody has said they can come to any time of {meeting.label} "
                    f"{meeting.title} yet. The organiser can still fix one with "
                    f"{self.ctx.prefix}meet fix {meeting.label} <number>, or propose new times."
                )
                await job.send(meeting.room_id, text, thread_root=meeting.thread_root)
                return
            if not await self.store.fix(meeting.id, best.slot.number, "", job.now):
                return
            fixed = await self.store.get(meeting.id)
        assert fixed is not None
        await self.announce_fixed(fixed, self.ctx.outgoing("fixed", str(meeting.id)), best=best)

    async def _finish_auto_fix(self, meeting: Meeting) -> None:
        """Fixed at its deadline just before a crash, not yet announced: announce it now with
        the deadline's transaction ids (shown once if it did go out)."""
        best = best_slot(tally(meeting.slots, await self.store.ballots(meeting.id)))
        await self.announce_fixed(meeting, self.ctx.outgoing("fixed", str(meeting.id)), best=best)

    async def announce_fixed(
        self,
        meeting: Meeting,
        out: Outgoing,
        reply_to: str | None = None,
        best: Best | None = None,
    ) -> None:
        """The proposal edited to say it is fixed, the announcement, the poll's end; then arm
        the reminders."""
        now = self.ctx.clock.now()
        zone = await self.ctx.timezone(meeting.room_id)
        values = {
            "meeting": meeting,
            "label": meeting.label,
            "when": render.when_text(meeting, zone, now),
            "place": render.place_text(meeting),
            "best": render.best_values(meeting, best, zone, now) if best else None,
            "auto": best is not None,
        }
        # The proposal stops asking when people can (before the announcement is recorded as
        # one of the meeting's posts, so this edits the proposal alone).
        await self.show(meeting, out)
        text = self.ctx.render("fixed", **values)
        event_id = await send_notice(
            self.ctx, out, meeting.room_id, text, reply_to=reply_to, thread_root=meeting.thread_root
        )
        # No .ics in the room: a file notifies every member. It goes by DM to whoever says
        # they're going (!rsvp), and to them again when the meeting changes.
        await self.store.set_events(meeting.id, announce_event_id=event_id)
        # Only now one of the meeting's posts: a replay of an announcement not yet recorded
        # above must edit the same posts (the proposal) with the same transaction ids.
        await self.ctx.posts.remember(meeting.label, meeting.room_id, event_id)
        await self.end_polls(meeting, out, "is fixed")
        await self.rearm(meeting.id)

    async def show(self, meeting: Meeting, out: Outgoing) -> None:
        """Edit every post of the meeting (its proposal, its fixed announcement) to what is true
        now: fixed at its current time, or cancelled."""
        now = self.ctx.clock.now()
        zone = await self.ctx.timezone(meeting.room_id)
        when = render.when_text(meeting, zone, now)
        if meeting.state == CANCELLED:
            text = self.ctx.render(
                "changed", meeting=meeting, label=meeting.label, when=when, whole_cancelled=True,
                ics=False,
            )  # fmt: skip
        else:
            place = render.place_text(meeting)
            text = self.ctx.render(
                "fixed", meeting=meeting, label=meeting.label, when=when, place=place, best=None
            )
        await self.ctx.posts.refresh(meeting.label, text.text, text.html, out)

    async def end_polls(self, meeting: Meeting, out: Outgoing, why: str) -> None:
        """End the meeting's availability polls (one per time, or one of all the times)."""
        polls = list((await self.store.slot_polls(meeting.id)).values())
        if not polls and meeting.poll_event_id:
            polls = [meeting.poll_event_id]
        for poll_id in sorted(polls):
            await out.event(
                meeting.room_id, render.END_TYPE, render.end_content(meeting, poll_id, why)
            )

    async def send_change(
        self, meeting: Meeting, out: Outgoing, values: dict[str, Any], cancelled: bool = False
    ) -> None:
        """Edit the meeting's posts to its new time or to cancelled, then tell the room and
        everyone going about the move or cancellation, with a new .ics."""
        await self.show(meeting, out)
        now = self.ctx.clock.now()
        has_ics = meeting.start is not None
        text = self.ctx.render("changed", meeting=meeting, label=meeting.label, ics=has_ics,
                               **values)  # fmt: skip
        await send_notice(self.ctx, out, meeting.room_id, text, thread_root=meeting.thread_root)
        data: bytes | None = None
        if has_ics:
            data, name = await self.calendar_file(meeting, now, cancelled=cancelled)
        for person in await self.store.going(meeting.id):
            try:
                room = await self.ctx.direct_room(person)
                told = Message(text.text, text.html, notify=(person,))
                await out.message(room, told, may_ping_room=False)
                if data is not None:
                    await out.file(room, data, name, "text/calendar")
            except TransportError as exc:
                log.warning("could not tell a person about %s: %s", meeting.label, exc)

    # -- reminders -----------------------------------------------------------------------------
    async def rearm(self, meeting_id: int) -> None:
        """Arm the next reminder of one meeting (after it is fixed, moved or changed)."""
        meeting = await self.store.get(meeting_id)
        if meeting is None or meeting.state != FIXED:
            self.ctx.jobs.cancel(f"remind:{meeting_id}")
            return
        sent = await self.records.reminder_keys([meeting_id])
        offsets = (await self.ctx.config(meeting.room_id)).offsets
        self._arm_pending(meeting, self.ctx.clock.now(), sent, offsets)

    def _arm_pending(
        self, meeting: Meeting, now: datetime, sent: Any, offsets: tuple[timedelta, ...]
    ) -> None:
        key = f"remind:{meeting.id}"
        schedule = meeting.schedule()
        if schedule is None or not offsets:
            self.ctx.jobs.cancel(key)
            return
        pending = pending_reminders(meeting.id, schedule, offsets, now, sent, meeting.changed_at)
        if not pending:
            self.ctx.jobs.cancel(key)
            return
        due = min(r.due_at for r in pending)
        if due <= now and not self._caught_up:
            return  # sent late (or dropped) in caught_up(), after the backlog
        self.ctx.jobs.at(key, due, functools.partial(self._remind, meeting.id))

    async def _remind(self, meeting_id: int, job: JobContext[MeetingsConfig]) -> None:
        async with self.lock(meeting_id):
            meeting = await self.store.get(meeting_id)
            schedule = meeting.schedule() if meeting else None
            if meeting is None or schedule is None or meeting.state != FIXED:
                return
            config = await self.ctx.config(meeting.room_id)
            now = self.ctx.clock.now()
            sent = await self.records.reminder_keys([meeting_id])
            pending = pending_reminders(
                meeting_id, schedule, config.offsets, now, sent, meeting.changed_at
            )
            for reminder, delivery in plan_due(pending, now):
                if not config.enabled:
                    delivery = Delivery.SKIP  # the room switched meetings off
                async with self.ctx.db.transaction():
                    claimed = await self.records.claim_reminder(
                        reminder.key, meeting_id, reminder.due_at, delivery.value, now
                    )
                    keys = (
                        await self._promise_reminder(meeting, reminder.key, delivery)
                        if claimed and delivery is not Delivery.SKIP
                        else []
                    )
                for key in keys:
                    await self.ctx.effects.carry_out(key)
            sent = await self.records.reminder_keys([meeting_id])
            self._arm_pending(meeting, now, sent, config.offsets)

    async def _promise_reminder(self, meeting: Meeting, key: str, delivery: Delivery) -> list[str]:
        """Promise one reminder to the outbox: in the room, and by DM to everyone going (in
        the transaction that claims it). Each expires when the meeting starts. Returns the
        effects' keys, to carry out once the transaction is over."""
        parsed = parse_reminder_key(key, meeting.duration)
        if parsed is None:
            return []
        start = parsed[0].start
        made = {"meeting": meeting.id, "key": key, "late": delivery is Delivery.LATE}
        keys = [f"reminder:{key}"]
        await self.ctx.effects.promise(keys[0], Composed("reminder", made), expires=start)
        for person in await self.store.going(meeting.id):
            # The key names no one: a keyed hash of the person (the payload, wiped once the
            # DM is sent, holds their id).
            dm_key = f"reminder-dm:{key}:{self.ctx.keyed_hash(person)}"
            promised = Composed("reminder", {**made, "person": person})
            await self.ctx.effects.promise(dm_key, promised, expires=start)
            keys.append(dm_key)
        return keys

    async def _adopt(self, key: str, meeting_id: int, delivery: Delivery) -> None:
        """A reminder claimed and not recorded as sent: promised if it is not yet (a claim an
        earlier version left at a crash mid-send), and carried out now (the outbox retries
        its own every minute anyway)."""
        meeting = await self.store.get(meeting_id)
        if meeting is None:
            await self.records.finish_reminder(key, "")
            return
        async with self.ctx.db.transaction():
            keys = await self._promise_reminder(meeting, key, delivery)
        for effect in keys:
            await self.ctx.effects.carry_out(effect)

    async def _compose_reminder(self, args: dict[str, Any]) -> Say | DirectMessage | None:
        """The reminder as it reads when it goes out: how long until the start, and "late"."""
        meeting = await self.store.get(int(args["meeting"]))
        key = str(args["key"])
        parsed = parse_reminder_key(key, meeting.duration) if meeting else None
        now = self.ctx.clock.now()
        if meeting is None or parsed is None or meeting.state != FIXED:
            return None  # cancelled or changed meanwhile: nothing to remind of
        occurrence, offset = parsed
        if now >= occurrence.start:
            return None
        reminder = Reminder(key, meeting.id, occurrence, offset, occurrence.start - offset)
        person = args.get("person")
        if person is not None and person not in await self.store.going(meeting.id):
            return None  # no longer going
        zone = (
            await self.zone_of(str(person), meeting.room_id)
            if person is not None
            else await self.ctx.timezone(meeting.room_id)
        )
        rendered = self.ctx.render(
            "reminder",
            meeting=meeting,
            label=meeting.label,
            starts_in=describe_delta(occurrence.start - now),
            when=render.short_slot(meeting, occurrence.start, zone, now),
            place=render.place_text(meeting),
            note=late_note(reminder, now) if args.get("late") else "",
        )
        if person is not None:
            return DirectMessage(str(person), rendered.text, rendered.html)
        return Say(
            meeting.room_id,
            rendered.text,
            rendered.html,
            reply_to=meeting.announce_event_id,
            thread_root=meeting.thread_root,
        )

    async def _reminder_done(self, key: str, event_id: str) -> None:
        kind, _, reminder = key.partition(":")
        if kind == "reminder":  # the room's (a DM's is not recorded)
            await self.records.finish_reminder(reminder, event_id)
