"""A poll's life after ``!poll``: posting, deadlines, recounts, reminders, closing, reviews.

Every send here that is not caused by a resident's event goes through
``PluginContext.outgoing``/``send`` keyed by the poll, so a close retried after a crash, or raced
by ``!poll close`` and the deadline, speaks once. The results message is a promise to the
engine's outbox, made in the transaction that starts the close, and written when it goes out
from the count to the end event's time (a composed effect).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from civicbot_plugins.polls import render
from civicbot_plugins.polls.models import (
    ANONYMOUS,
    CANCELLED,
    CLOSED,
    CLOSING,
    OPEN,
    Poll,
    anonymous_voter,
)
from civicbot_plugins.polls.secret import withhold_small_result
from civicbot_plugins.polls.service import (
    BLOCK,
    PollKind,
    Response,
    Tally,
    count_ballots,
    instant_runoff,
    tally_responses,
)
from civicbot_plugins.polls.store import PollStore

from civicbot.api import (
    Composed,
    DirectMessage,
    Event,
    EventKind,
    Say,
    TransportError,
    format_when,
    ms,
    poll_response_answers,
)

if TYPE_CHECKING:
    from civicbot_plugins.polls.config import PollsConfig

    from civicbot.api import JobContext, PluginContext

log = logging.getLogger(__name__)
TICK = timedelta(minutes=10)
# A reminder sent later than this after its moment (the bot was down) says it is late.
ON_TIME_GRACE = timedelta(minutes=5)
RETRY = timedelta(minutes=15)  # the transport already retried through outages


class Tracked(NamedTuple):
    """An open native poll, found by its start event."""

    poll_id: int
    salt: str
    room_id: str


class Outcome(NamedTuple):
    """A closing poll's final count and its results message."""

    cutoff: int | None
    end_id: str | None
    result: dict[str, Any]
    voters: int
    text: str
    html: str | None


class PollRunner:
    """Owns the timers and the in-memory index of open native polls."""

    def __init__(self, ctx: PluginContext[PollsConfig], store: PollStore):
        self.ctx = ctx
        self.store = store
        self.by_start: dict[str, Tracked] = {}  # start event id -> the poll
        self.forgotten: dict[int, set[str]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._armed: set[int] = set()
        # Voters asked to vote again since this start (their ballot was lost in a stop): if
        # their vote sent before the stop is handled after the asking, it takes part after all,
        # and their second vote is told so rather than "already voted".
        self.asked_again: set[tuple[int, str]] = set()
        self._counted: dict[int, Outcome] = {}  # closing polls counted, results not recorded
        self._caught_up = False

    # -- start-up ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Register the results' composer; re-arm every deadline from the database. A
        deadline missed while the bot was down waits for :meth:`caught_up`, so the ``!vote``
        messages sent meanwhile are read first; a close interrupted by a crash is finished at
        once (its cut-off is already fixed)."""
        self.ctx.effects.composer("results", self._compose_results)
        now = self.ctx.clock.now()
        for poll in await self.store.unfinished():
            self.track(poll)
            self.forgotten[poll.id] = await self.store.forgotten_hashes(poll.id)
            if poll.state == CLOSING:
                self.arm(poll.id, now)
            elif poll.closes_at > now:
                self.arm(poll.id, poll.closes_at)
                config = await self.ctx.config(poll.room_id)
                self.arm_reminder(poll, config.reminder_hours)
        self.ctx.jobs.at("recount", now, self._recount_job)
        self.ctx.jobs.every("tick", TICK, self._tick_job)

    async def caught_up(self) -> None:
        """The backlog from while we were down has been handled: close every overdue poll."""
        self._caught_up = True
        await self._ask_again_for_lost_ballots()
        now = self.ctx.clock.now()
        for poll in await self.store.unfinished():
            if poll.state != OPEN or poll.closes_at > now:
                continue
            try:
                await self.close(poll.id, closed_by="")
            except TransportError as exc:  # close() has armed a retry
                log.warning("could not close overdue %s yet: %s", poll.label, exc)

    async def _ask_again_for_lost_ballots(self) -> None:
        """Secret ballots wait in memory for their batch (see :mod:`secret`): those the bot
        held when it stopped were never stored, so their voters are asked to vote again."""
        lost = await self.store.secret.lost()
        told = []
        for entry in lost:
            poll_id, voter = int(entry.item.split(":")[1]), entry.who
            poll = await self.store.get(poll_id)
            if voter.startswith(ANONYMOUS) or poll is None or poll.state != OPEN:
                told.append(entry)  # forgotten meanwhile, or closed: nobody to ask
                continue
            text = (
                f"I restarted before your secret vote in P-{poll_id} was stored, so it was not "
                f"counted. Please send it again: `{self.prefix}vote P-{poll_id} …`."
            )
            try:
                room = await self.ctx.direct_room(voter)
                await self.ctx.send(room, text, key=f"secret-lost:{secrets.token_hex(8)}")
                told.append(entry)
                self.asked_again.add((poll_id, voter))
            except TransportError as exc:  # asked at the next start instead
                log.warning("could not ask a voter to vote again in P-%d: %s", poll_id, exc)
        await self.store.secret.asked_again(told)

    def track(self, poll: Poll) -> None:
        if poll.start_event_id and poll.state in (OPEN, CLOSING):
            self.by_start[poll.start_event_id] = Tracked(poll.id, poll.salt, poll.room_id)

    def tracked(self, event: Event) -> Tracked | None:
        """The open native poll a response or end event refers to, if it was sent in that
        poll's room (a start event id is no secret: anyone may quote it from elsewhere)."""
        relation = event.relates_to or {}
        if relation.get("rel_type") != "m.reference":
            return None
        found = self.by_start.get(relation.get("event_id", ""))
        return found if found is not None and found.room_id == event.room_id else None

    def arm(self, poll_id: int, when: datetime) -> None:
        async def close_at_deadline(job: JobContext[PollsConfig]) -> None:
            if not self._caught_up:
                poll = await self.store.get(poll_id)
                if poll is not None and poll.state == OPEN:
                    return  # caught_up() closes it once the backlog has been read
            await self.close(poll_id, closed_by="")

        self.ctx.jobs.at(f"close:{poll_id}", when, close_at_deadline)
        self._armed.add(poll_id)

    def arm_reminder(self, poll: Poll, reminder_hours: int) -> None:
        """Remind the room at its moment (``reminder_hours`` before the close), not at the next
        ten-minute tick; the tick stays as the backstop for a room that changes its setting."""
        if not reminder_hours or poll.reminder_sent:
            return
        remind_at = poll.closes_at - timedelta(hours=reminder_hours)
        if remind_at <= poll.created_at:
            return

        async def remind(job: JobContext[PollsConfig]) -> None:
            fresh = await self.store.get(poll.id)
            if fresh is not None and fresh.state == OPEN:
                await self._remind_if_due(fresh, self.ctx.clock.now())

        self.ctx.jobs.at(f"reminder:{poll.id}", remind_at, remind)

    def drop(self, poll: Poll) -> None:
        """Stop following a poll that will never close (cancelled): no timer, no button votes."""
        self.ctx.jobs.cancel(f"close:{poll.id}")
        self.ctx.jobs.cancel(f"reminder:{poll.id}")
        self._armed.discard(poll.id)
        if poll.start_event_id:
            self.by_start.pop(poll.start_event_id, None)
        self.forgotten.pop(poll.id, None)

    def stop(self) -> None:
        """Forget the armed deadlines (the core cancels the jobs); they stay in the database."""
        self._armed.clear()

    async def _recount_job(self, job: JobContext[PollsConfig]) -> None:
        await self.recount_all()

    async def _tick_job(self, job: JobContext[PollsConfig]) -> None:
        await self.tick()

    async def recount_all(self) -> None:
        """After a restart: take every open poll's votes from the homeserver again, in case
        some arrived (or were redacted) while we were away; honour an end sent meanwhile."""
        for poll in await self.store.unfinished():
            if poll.state != OPEN or not poll.start_event_id:
                continue
            try:
                end = await self.recount(poll)
            except TransportError as exc:
                log.warning("could not recount %s: %s", poll.label, exc)
                continue
            if end is not None:
                await self.close(poll.id, closed_by=end[2], end=end)
        await self.tick()

    def voter(self, poll_id: int, salt: str, user_id: str) -> str:
        forgotten = self.forgotten.get(poll_id)
        if forgotten:
            alias = anonymous_voter(salt, user_id)
            if alias in forgotten:
                return alias
        return user_id

    async def recount(self, poll: Poll) -> tuple[int, str, str] | None:
        """Replace the stored button votes with the homeserver's relations. Returns the first
        valid end event as (ts, event id, sender), if there is one."""
        assert poll.start_event_id
        as_of = ms(self.ctx.clock.now())
        events = await self.ctx.rooms.relations(poll.room_id, poll.start_event_id, "m.reference")
        power = await self.ctx.permissions.power_levels(poll.room_id)
        found: list[tuple[str, str, object, int]] = []
        ends: list[tuple[int, str, str]] = []
        for event in events:
            if event.room_id != poll.room_id:
                continue
            if event.kind is EventKind.POLL_RESPONSE and not event.content:
                continue  # redacted: clients drop it and the sender's earlier vote counts again
            if event.kind is EventKind.POLL_RESPONSE and event.sender != self.ctx.rooms.bot_user_id:
                voter = self.voter(poll.id, poll.salt, event.sender)
                found.append(
                    (event.event_id, voter, poll_response_answers(event.content), event.ts)
                )
            elif event.kind is EventKind.POLL_END and self.may_end(event, power):
                ends.append((event.ts, event.event_id, event.sender))
        new = await self.store.replace_button_responses(poll.id, found, as_of)
        if new:
            log.info("recount of %s found %d votes we had not seen", poll.label, new)
        return min(ends) if ends else None

    async def on_response(self, event: Event) -> None:
        """A vote given with a poll's buttons (in the poll's room: see :meth:`tracked`). A
        block there carries no reason (a button can't), so the voter is asked for it by DM,
        as a typed block must give it: promised with the vote, so it is asked once, whatever
        instant the process dies and however long the homeserver is away."""
        tracked = self.tracked(event)
        if tracked is None:
            return
        voter = self.voter(tracked.poll_id, tracked.salt, event.sender)
        answers = poll_response_answers(event.content)
        poll = await self.store.get(tracked.poll_id)
        asks = (
            isinstance(answers, list)
            and BLOCK in answers
            and poll is not None
            and poll.kind is PollKind.PROPOSAL
            and not poll.secret
        )
        key = f"block-reason:{event.event_id}"
        async with self.ctx.db.transaction():
            new = await self.store.add_response(
                tracked.poll_id, event.event_id, voter, answers, event.ts, "button"
            )
            if new and asks and poll is not None:
                await self.ctx.effects.promise(key, DirectMessage(event.sender, self._why(poll)))
        if asks:
            await self.ctx.effects.carry_out(key)

    def _why(self, poll: Poll) -> str:
        return (
            f"You pressed Block on {poll.label} (“{poll.question}”). A block stops the group "
            f"going ahead, so please say why: type {self.prefix}vote {poll.label} block <your "
            "reason> here or in the poll's room. Until then the results show your block "
            "with “reason asked for”."
        )

    async def on_end(self, event: Event) -> None:
        """Someone who may redact in the poll's room pressed "End poll" there: close it at
        that moment."""
        tracked = self.tracked(event)
        if tracked is None:
            return
        power = await self.ctx.permissions.power_levels(tracked.room_id)
        if self.may_end(event, power):
            end = (event.ts, event.event_id, event.sender)
            await self.close(tracked.poll_id, closed_by=event.sender, end=end)

    def may_end(self, event: Event, power: Any) -> bool:
        """MSC3381: an end counts from the poll's sender (us) or someone who may redact."""
        return event.sender == self.ctx.rooms.bot_user_id or power.can_redact(event.sender)

    # -- closing -------------------------------------------------------------------------------
    def _lock(self, poll_id: int) -> asyncio.Lock:
        return self._locks.setdefault(poll_id, asyncio.Lock())

    async def close(
        self,
        poll_id: int,
        closed_by: str,
        end: tuple[int, str, str] | None = None,
        close_event_id: str | None = None,
    ) -> Poll | None:
        """Close a poll once: end event, recount, results message. The close and the results
        are one promise to the engine's outbox, so a crash or an outage at any instant
        finishes it later, once (state ``closing`` is finished at start-up too)."""
        async with self._lock(poll_id):
            poll = await self.store.get(poll_id)
            if poll is None or poll.state in (CLOSED, CANCELLED):
                return poll
            now = self.ctx.clock.now()
            key = f"results:{poll_id}"
            async with self.ctx.db.transaction():
                if poll.state == OPEN:
                    await self.store.begin_close(poll_id, closed_by, now, close_event_id)
                await self.ctx.effects.promise(key, Composed("results", {"poll": poll_id}))
            poll = await self.store.get(poll_id)
            assert poll is not None
            self.ctx.jobs.cancel(f"close:{poll_id}")
            self._armed.discard(poll_id)
            try:
                await self._show_closed(poll, now)
                # Counted here (the end event sent, its timestamp the cut-off), posted by the
                # outbox: what the composer makes from this, or counts again after a stop.
                self._counted[poll_id] = await self._outcome(poll, end, now)
            except TransportError:
                self.arm(poll_id, now + RETRY)  # the sends repeat their transaction ids
                raise
            results_id = await self.ctx.effects.carry_out(key)
            outcome = self._counted.pop(poll_id, None)
            if not results_id or outcome is None:
                # Still promised (the homeserver is away): the outbox tries again each minute,
                # and this close records it once it is done.
                self.arm(poll_id, now + RETRY)
                raise TransportError(f"the results of {poll.label} are not posted yet")
            await self.store.finish_close(
                poll.id, outcome.cutoff, outcome.end_id, results_id, outcome.result
            )
            if poll.start_event_id:
                self.by_start.pop(poll.start_event_id, None)
            self.forgotten.pop(poll.id, None)
            log.info("closed %s: %d voters", poll.label, outcome.voters)
            return await self.store.get(poll_id)

    async def _outcome(
        self, poll: Poll, end: tuple[int, str, str] | None, now: datetime
    ) -> Outcome:
        """The final count of a closing poll and its results message."""
        tally, runoff, cutoff, end_id = await self._final_count(poll, end)
        members = await self.member_count(poll.room_id)
        result = render.summarise(poll, tally, members, runoff, poll.closed_at or now)
        if poll.secret:
            config = await self.ctx.config(poll.room_id)
            minimum = poll.secret_threshold(config.min_secret_voters)
            # Below the threshold the ballots were dropped unwritten at the seal (see
            # secret.py): the turnout is who voted.
            voters = await self.store.secret.voter_count(poll.id)
            if voters < minimum:
                result["voters"] = voters
                result["turnout"] = round(100 * voters / members) if members else None
            result = withhold_small_result(result, minimum)
        zone = await self.ctx.timezone(poll.room_id)
        values = render.result_values(poll, result, self.prefix, now, zone)
        rendered = self.ctx.templates.render("results", **values)
        return Outcome(cutoff, end_id, result, tally.voters, rendered.text, rendered.html)

    async def _compose_results(self, args: dict[str, Any]) -> Say | None:
        """The results message, when the outbox carries it out: as :meth:`close` counted it,
        or counted again (a promise left from before a stop, retried before the close is)."""
        poll = await self.store.get(int(args["poll"]))
        if poll is None or poll.state != CLOSING:
            return None  # finished (or cancelled) meanwhile
        outcome = self._counted.get(poll.id)
        if outcome is None:
            outcome = self._counted[poll.id] = await self._outcome(poll, None, self.ctx.clock.now())
        return Say(
            poll.room_id,
            outcome.text,
            outcome.html,
            reply_to=poll.text_event_id,
            thread_root=poll.thread_root,
        )

    async def _show_closed(self, poll: Poll, now: datetime) -> None:
        """The announcement stops asking for votes ("Closes in 2 days", how to vote): it says
        the poll closed; the results follow as a reply to it. Keyed by the poll, so a close
        finished after a restart repeats the same edit, which the homeserver drops."""
        zone = await self.ctx.timezone(poll.room_id)
        values = {
            "poll": poll,
            "label": poll.label,
            "when": format_when(poll.closed_at or now, zone, now),
        }
        closed = self.ctx.templates.render("closed", **values)
        await self.ctx.refresh(poll.label, closed, key=f"closed:{poll.id}")

    async def _final_count(
        self, poll: Poll, end: tuple[int, str, str] | None
    ) -> tuple[Tally, Any, int | None, str | None]:
        if poll.secret:
            configured = (await self.ctx.config(poll.room_id)).min_secret_voters
            minimum = poll.secret_threshold(configured)
            ballots = await self.store.secret.ballots(poll.id, closing_minimum=minimum)
            ranked = poll.kind is PollKind.RANKED
            tally = count_ballots(ballots, poll.option_ids, ranked=ranked)
            return tally, self._runoff(poll, tally), None, None
        cutoff: int | None = ms(poll.closed_at) if poll.closed_at else None
        end_id: str | None = None
        if poll.start_event_id:
            if end is None:
                # MSC3381 lets the end carry the sender's count, so clients that show it agree
                # with the results message: the count of every response read so far.
                counts = (await self.live_tally(poll)).counts
                await self.ctx.outgoing(f"end:{poll.id}").event(
                    poll.room_id, render.END_TYPE, render.end_content(poll, counts)
                )
            try:
                # The end event's own timestamp is the cut-off every client applies.
                end = await self.recount(poll) or end
            except TransportError as exc:
                log.warning("could not recount %s at close: %s", poll.label, exc)
            if end is not None:
                cutoff, end_id = end[0], end[1]
        responses = await self.store.responses(poll.id)
        tally = tally_responses(
            responses,
            poll.option_ids,
            poll.ballot_length,
            cutoff,
            ranked=poll.kind is PollKind.RANKED,
        )
        return tally, self._runoff(poll, tally), cutoff, end_id

    @staticmethod
    def _runoff(poll: Poll, tally: Tally) -> Any:
        if poll.kind is not PollKind.RANKED:
            return None
        return instant_runoff(tally.ballots.values(), poll.option_ids, seed=poll.id)

    async def live_tally(self, poll: Poll) -> Tally:
        """The count so far (for ``!poll show`` and reminders); never published for secret or
        hidden polls."""
        if poll.secret:
            ballots = await self.store.secret.ballots(poll.id)
            return count_ballots(ballots, poll.option_ids, poll.kind is PollKind.RANKED)
        responses: list[Response] = await self.store.responses(poll.id)
        return tally_responses(
            responses, poll.option_ids, poll.ballot_length, ranked=poll.kind is PollKind.RANKED
        )

    async def voters_so_far(self, poll: Poll) -> int:
        if poll.secret:
            return await self.store.secret.voter_count(poll.id)
        return (await self.live_tally(poll)).voters

    async def voters_of(self, polls: list[Poll]) -> dict[int, int]:
        """:meth:`voters_so_far` of many polls at once: one query for all the public ones."""
        public = [p for p in polls if not p.secret]
        responses = await self.store.responses_of_polls([p.id for p in public])
        counts = {
            p.id: tally_responses(
                responses.get(p.id, []),
                p.option_ids,
                p.ballot_length,
                ranked=p.kind is PollKind.RANKED,
            ).voters
            for p in public
        }
        for p in polls:
            if p.secret:
                counts[p.id] = await self.store.secret.voter_count(p.id)
        return counts

    async def member_count(self, room_id: str) -> int | None:
        try:
            members = await self.ctx.rooms.joined_members(room_id)
        except TransportError:
            return None
        return len([m for m in members if m != self.ctx.rooms.bot_user_id]) or None

    @property
    def prefix(self) -> str:
        return self.ctx.prefix

    # -- reminders and reviews -----------------------------------------------------------------
    async def tick(self) -> None:
        now = self.ctx.clock.now()
        for poll in await self.store.open_anywhere():
            await self._remind_if_due(poll, now)
        for poll in await self.store.reviews_due(now):
            await self._review(poll, now)

    async def _remind_if_due(self, poll: Poll, now: datetime) -> None:
        config = await self.ctx.config(poll.room_id)
        if not config.enabled or poll.reminder_sent or not config.reminder_hours:
            return
        remind_at = poll.closes_at - timedelta(hours=config.reminder_hours)
        if poll.created_at < remind_at <= now < poll.closes_at:
            await self._remind(poll, now, late=now - remind_at > ON_TIME_GRACE)

    async def _remind(self, poll: Poll, now: datetime, late: bool = False) -> None:
        zone = await self.ctx.timezone(poll.room_id)
        values = render.announce_values(poll, now, self.prefix, zone, self.ctx.rooms.bot_user_id)
        values["voters"] = await self.voters_so_far(poll)
        values["late"] = late
        await self.ctx.send(
            poll.room_id,
            self.ctx.templates.render("reminder", **values),
            key=f"remind:{poll.id}",
            reply_to=poll.text_event_id,
            thread_root=poll.thread_root,
        )
        await self.store.set_flag(poll.id, "reminder_sent")

    async def _review(self, poll: Poll, now: datetime) -> None:
        assert poll.review_at is not None
        text = self.ctx.templates.render("review", poll=poll, label=poll.label, prefix=self.prefix)
        await self.ctx.send(
            poll.room_id,
            text,
            key=f"review:{poll.id}:{poll.review_at.isoformat()}",
            thread_root=poll.discussion_root,
        )
        await self.store.set_flag(poll.id, "review_sent")

    async def post_outcome(self, poll: Poll, key: str) -> str:
        zone = await self.ctx.timezone(poll.room_id)
        now = self.ctx.clock.now()
        review = format_when(poll.review_at, zone, now) if poll.review_at else ""
        text = self.ctx.templates.render(
            "outcome", poll=poll, label=poll.label, prefix=self.prefix, review=review
        )
        # Posted for whoever recorded it: their right to ping the room applies, nobody else's.
        return await self.ctx.send(
            poll.room_id,
            text,
            key=f"outcome:{poll.id}:{key}",
            thread_root=poll.discussion_root,
            reply_to=poll.discussion_root,
            on_behalf_of=poll.outcome_by,
        )
