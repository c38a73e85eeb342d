"""``!poll``, ``!vote``, ``!rank``, ``!poll close``, ``!poll show``, ``!polls``, ``!outcome``.

Thin handlers: they read the input, check who may act, and hand over to the store, the pure
counting in :mod:`service` and the timers in :mod:`lifecycle`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from civicbot_plugins.polls import render, reports
from civicbot_plugins.polls.lifecycle import PollRunner
from civicbot_plugins.polls.models import CLOSED, MIGRATIONS, OPEN, POSTING, NewPoll, Poll
from civicbot_plugins.polls.parsing import (
    Choice,
    PollInputError,
    VoteError,
    parse_choice,
    parse_outcome,
    parse_poll_input,
    parse_ranking,
)
from civicbot_plugins.polls.secret import ALREADY, COUNTED
from civicbot_plugins.polls.service import PollKind
from civicbot_plugins.polls.store import PollStore
from pydantic import Field

from civicbot.commands import CommandError, Rest, command, item_id
from civicbot.context import Context
from civicbot.dates import DateError, format_when, parse_when
from civicbot.events import EventKind
from civicbot.logs import private
from civicbot.permissions import Role
from civicbot.plugin import DigestSection, ForgetReport, Plugin, PluginConfig, on

MIN_DURATION = timedelta(minutes=5)
PollId = item_id("P")  # accepts P-12, p12 or 12
EXAMPLE = "!poll Which day for the litter pick? | Saturday | Sunday | closes friday 18:00"


class PollsConfig(PluginConfig):
    """Settings of the polls plugin (bot-wide defaults; moderators may override per room)."""

    reminder_hours: int = Field(
        24,
        ge=0,
        le=24 * 30,
        description="hours before a poll closes to remind the room: 0 (off) to 720",
    )
    default_duration_days: int = Field(
        7,
        ge=1,
        le=365,
        description="days a poll stays open when no closing time is given: 1 to 365",
    )
    create_level: int = Field(
        0,
        ge=0,
        le=100,
        description="power level needed to start a poll, 0 (everyone) to 100; moderators may",
    )
    min_secret_voters: int = Field(
        3,
        ge=1,
        le=1000,
        description="fewer secret voters than this and only the turnout is published: 1 to 1000",
    )


class PollsPlugin(Plugin):
    name = "polls"
    description = "Polls, proposals and ranked-choice decisions that every Matrix client can use."
    Config = PollsConfig
    migrations = MIGRATIONS

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        self.store = PollStore(ctx.db, ctx.keyed_hash)
        self.runner = PollRunner(ctx, self.store)

    async def setup(self) -> None:
        # Secret ballots rely on deleted rows being overwritten (see secret.py); the core sets
        # this too, but the promise is ours to keep.
        await self.ctx.db.execute("PRAGMA secure_delete=ON")
        await self.runner.start()

    async def caught_up(self) -> None:
        await self.runner.caught_up()

    async def teardown(self) -> None:
        self.runner.stop()
        await self.store.secret.close()

    # -- creating ------------------------------------------------------------------------------
    @command("poll", examples=(EXAMPLE, "!poll Adopt the new bin rota? | proposal | secret"))
    async def poll(self, ctx: Context, question_and_options: Rest) -> None:
        """Start a poll: a question, then options, separated by | or on new lines.

        Add settings as extra parts: `closes friday 18:00` or `closes in 3 days` (default: in a
        week), `up to 2` (multiple choice), `ranked` (ranked choice), `proposal` (agree, abstain,
        disagree or block), `secret` (votes by direct message only, totals published) and
        `hidden` (results only at the close)."""
        text = question_and_options
        poll = await self.store.by_source(ctx.event.event_id)
        if poll is None:
            first = text.split(None, 1)[0].lower() if text.strip() else ""
            if first in ("close", "show") and "|" not in text and "\n" not in text:
                # "!poll close" with a missing or mistyped id lands here, not in a new poll.
                raise CommandError(
                    f"Which poll? Type {ctx.prefix}poll {first} P-12 ({ctx.prefix}polls lists "
                    "the open ones). To start a poll, give the question and at least two "
                    "options, separated by |."
                )
            poll = await self._create(ctx, text)
        if poll.state in (POSTING, OPEN):
            await self._post(ctx, poll)

    async def _create(self, ctx: Context, text: str) -> Poll:
        config = ctx.config
        power = await self.ctx.permissions.power_levels(ctx.room_id)
        if power.level(ctx.sender) < config.create_level and not await ctx.has_role(Role.MODERATOR):
            raise CommandError(
                f"In this room only people with power level {config.create_level} or more can "
                "start polls. Ask a moderator to start this one."
            )
        try:
            spec = parse_poll_input(text)
        except PollInputError as exc:
            raise CommandError(f"{exc}\nFor example: {EXAMPLE}") from None
        zone = await ctx.timezone()
        now = ctx.now
        if spec.closes_text:
            closes = await self._when(spec.closes_text, zone, now)
            if closes - now < MIN_DURATION:
                raise CommandError("That closes too soon: give people at least a few minutes.")
        else:
            closes = now + timedelta(days=config.default_duration_days)
        poll, _ = await self.store.create(
            NewPoll(
                room_id=ctx.room_id,
                source_event_id=ctx.event.event_id,
                creator=ctx.sender,
                question=spec.question,
                kind=spec.kind,
                max_selections=spec.max_selections,
                options=spec.options,
                secret=spec.secret,
                hidden=spec.hidden,
                timezone=zone.key,
                created_at=now,
                closes_at=closes,
                thread_root=ctx.event.thread_root,
            )
        )
        return poll

    @staticmethod
    async def _when(text: str, zone: Any, now: datetime) -> datetime:
        try:
            return await asyncio.to_thread(parse_when, text, zone, now)
        except DateError as exc:
            raise CommandError(str(exc)) from None

    async def _post(self, ctx: Context, poll: Poll) -> None:
        """Announce (plain text first, echoing the closing time), then the native poll. Replayed
        after a crash, the same sends repeat with the same transaction ids."""
        values = render.announce_values(poll, ctx.now, ctx.prefix, self.ctx.transport.user_id)
        text_id = await ctx.reply(self.ctx.templates.render("announce", **values))
        if not text_id:  # held back by the flood guard: the poll stays unposted and invisible
            return
        poll.text_event_id = text_id
        start_id = None
        if render.has_native_poll(poll):
            start_id = await ctx.out.event(
                ctx.room_id, render.START_TYPE, render.start_content(poll)
            )
        await self.store.mark_posted(poll.id, start_id, text_id)
        poll.start_event_id, poll.state = start_id, OPEN
        self.runner.track(poll)
        self.runner.arm(poll.id, poll.closes_at)

    # -- voting --------------------------------------------------------------------------------
    @command(
        "vote",
        examples=("!vote P-12 2", "!vote P-12 1 3", "!vote P-3 block <why>", "!vote P-12 withdraw"),
    )
    async def vote(self, ctx: Context, poll: PollId, choice: Rest) -> None:
        """Vote by option number; on a proposal say agree, abstain, disagree or block <why>.

        `withdraw` takes your vote back. Your latest vote counts, whether typed or given with
        the poll's buttons. For a secret ballot, send this to me in a direct message."""
        found = await self._poll_to_vote_in(ctx, poll)
        try:
            parsed = parse_choice(
                choice, found.kind, found.options, found.max_selections, found.label
            )
        except VoteError as exc:
            raise CommandError(str(exc)) from None
        await self._cast(ctx, found, parsed)

    @command("rank", examples=("!rank P-12 3 1 2",))
    async def rank(self, ctx: Context, poll: PollId, ranking: Rest) -> None:
        """Rank a ranked-choice poll's options, favourite first.

        You need not rank them all. Your latest ranking counts."""
        found = await self._poll_to_vote_in(ctx, poll)
        if found.kind is not PollKind.RANKED:
            raise CommandError(
                f"{found.label} isn't a ranked poll; vote with {ctx.prefix}vote {found.label} "
                "<number>."
            )
        try:
            answers = parse_ranking(ranking, found.options, found.label)
        except VoteError as exc:
            raise CommandError(str(exc)) from None
        await self._cast(ctx, found, Choice(answers))

    async def _poll_to_vote_in(self, ctx: Context, poll_id: int) -> Poll:
        """Votes are given in the poll's room or in a direct message (secret ballots: only
        there), never in a third room, whose members would see them."""
        poll = await self._poll_for(ctx, poll_id)
        if poll.room_id != ctx.room_id and not poll.secret and not await ctx.is_direct():
            raise CommandError(
                f"{poll.label} is a poll in another room, so I haven't counted that vote here. "
                f"Vote in the poll's room, or send {ctx.prefix}vote {poll.label} <number> to me "
                "in a direct message."
            )
        return poll

    async def _cast(self, ctx: Context, poll: Poll, choice: Choice) -> None:
        refusal = render.late_vote_refusal(poll, ctx.event.ts, ctx.now, ctx.prefix)
        if poll.secret:
            await self._cast_secret(ctx, poll, choice, refusal)
            return
        if refusal:
            raise CommandError(refusal)
        voter = self.runner.voter(poll.id, poll.salt, ctx.sender)
        await self.store.add_response(
            poll.id, ctx.event.event_id, voter, choice.answers, ctx.event.ts, "text", choice.reason
        )
        until = format_when(poll.closes_at, poll.zone, ctx.now)
        # Read from the backlog after the deadline (sent before it): no more changes.
        again = f" You can change it until {until}." if ctx.now < poll.closes_at else ""
        if not choice.answers:
            again = again and f" You can vote again until {until}."
            await ctx.reply(f"Your vote in {poll.label} is withdrawn.{again}")
            return
        chosen = render.describe_choice(poll, choice.answers)
        await ctx.reply(f"✅ Counted: your vote in {poll.label} is {chosen}.{again}")

    async def _cast_secret(
        self, ctx: Context, poll: Poll, choice: Choice, refusal: str | None
    ) -> None:
        if ctx.room_id == poll.room_id or not await ctx.is_direct():
            raise CommandError(
                f"{poll.label} is a secret ballot, so please don't vote here: send your vote to "
                f"me in a direct message instead ({ctx.prefix}vote {poll.label} <number>). "
                "Only the totals will be published."
            )
        if not choice.answers:
            raise CommandError(
                "A secret ballot can't be withdrawn or changed once cast: I keep no record of "
                "which ballot is yours."
            )
        status = await self.store.secret.cast(
            poll, ctx.sender, ctx.event.event_id, choice.answers, choice.reason, not refusal
        )
        self.log.info("secret ballot for %s from %s: %s", poll.label, private(ctx.sender), status)
        if status == COUNTED:
            await ctx.reply(
                f"✅ Your secret vote in {poll.label} has been counted. Nobody can see what you "
                "chose; only the totals will be published when it closes."
            )
        elif status == ALREADY:
            await ctx.reply(
                f"You have already voted in {poll.label}. A secret ballot can't be changed, "
                "because I keep no record of which ballot is yours."
            )
        else:
            raise CommandError(
                refusal or f"Voting in {poll.label} has closed, so that vote was not counted."
            )

    async def _poll_for(self, ctx: Context, poll_id: int) -> Poll:
        """The poll, if the sender may see it: asked in its room, or by a member elsewhere."""
        poll = await self.store.get(poll_id)
        missing = CommandError(
            f"I can't find P-{poll_id} in any room you're in. {ctx.prefix}polls lists the open "
            "polls."
        )
        if poll is None or poll.state == POSTING:
            raise missing
        if poll.room_id != ctx.room_id:
            if ctx.sender not in await self.ctx.transport.joined_members(poll.room_id):
                raise missing
        return poll

    async def _may_manage(self, ctx: Context, poll: Poll) -> bool:
        """Its creator, or a moderator of the poll's room, may close it and record its outcome."""
        return ctx.sender == poll.creator or await self.ctx.permissions.has(
            poll.room_id, ctx.sender, Role.MODERATOR
        )

    # -- closing and showing -------------------------------------------------------------------
    @command("poll close", examples=("!poll close P-12",))
    async def close(self, ctx: Context, poll: PollId) -> None:
        """Close a poll now and post the results (its creator or a moderator)."""
        found = await self._poll_for(ctx, poll)
        if not await self._may_manage(ctx, found):
            raise CommandError(
                f"Only the person who started {found.label} or a moderator can close it early. "
                f"It closes by itself {format_when(found.closes_at, found.zone, ctx.now)}."
            )
        # The same command again, replayed after a crash before it was marked handled, does
        # what it did the first time (the sends repeat their transaction ids), nothing more.
        replayed = found.close_event_id == ctx.event.event_id
        if found.state != OPEN and not replayed:
            raise CommandError(
                f"{found.label} has already closed. {ctx.prefix}poll show {found.label} shows the "
                "result."
            )
        closed = await self.runner.close(
            found.id, closed_by=ctx.sender, close_event_id=ctx.event.event_id
        )
        if ctx.room_id != found.room_id and closed is not None:
            await ctx.reply(f"Closed {found.label}; the results are posted in its room.")

    @command("poll show", examples=("!poll show P-12",))
    async def show(self, ctx: Context, poll: PollId) -> None:
        """Show a poll: its options, closing time and the count so far (or its result)."""
        found = await self._poll_for(ctx, poll)
        now = ctx.now
        values = render.announce_values(found, now, ctx.prefix, self.ctx.transport.user_id)
        if found.state == CLOSED and found.result:
            values.update(render.result_values(found, found.result, ctx.prefix, now))
            values["closed_now"] = True
        else:
            tally = await self.runner.live_tally(found)
            secret_count = await self.store.secret.voter_count(found.id) if found.secret else 0
            result = render.summarise(found, tally, None)
            values.update(render.result_values(found, result, ctx.prefix, now))
            values["voters"] = secret_count if found.secret else tally.voters
            values["closed_now"] = False
        await ctx.reply(self.ctx.templates.render("show", **values))

    @command("polls")
    async def polls(self, ctx: Context) -> None:
        """List the open polls here with their closing times (in a DM: in all your rooms)."""
        now = ctx.now
        if await ctx.is_direct():
            found = []
            for poll in await self.store.open_anywhere():
                if ctx.sender in await self.ctx.transport.joined_members(poll.room_id):
                    found.append(poll)
        else:
            found = await self.store.open_in(ctx.room_id)
        rows = []
        for poll in found:
            rows.append(
                {
                    "poll": poll,
                    "label": poll.label,
                    "closes": format_when(poll.closes_at, poll.zone, now),
                    "voters": await self.runner.voters_so_far(poll),
                    "kind": render.kind_line(poll),
                }
            )
        await ctx.reply(self.ctx.templates.render("list", rows=rows, prefix=ctx.prefix))

    # -- outcomes ------------------------------------------------------------------------------
    @command(
        "outcome", examples=("!outcome P-12 Litter pick on Saturday 10am | review in 4 weeks",)
    )
    async def outcome(self, ctx: Context, poll: PollId, decision: Rest) -> None:
        """Record what was decided after a poll closed; it is posted in the poll's thread.

        End with `| review in 3 months` (or a date) to bring it back up then."""
        found = await self._poll_for(ctx, poll)
        if not await self._may_manage(ctx, found):
            raise CommandError(
                f"Only the person who started {found.label} or a moderator can record its outcome."
            )
        if found.state != CLOSED:
            raise CommandError(
                f"{found.label} is still open. Close it first with {ctx.prefix}poll close "
                f"{found.label}, then record the outcome."
            )
        try:
            spec = parse_outcome(decision)
        except PollInputError as exc:
            raise CommandError(str(exc)) from None
        review = None
        if spec.review_text:
            review = await self._when(spec.review_text, found.zone, ctx.now)
        await self.store.set_outcome(found.id, spec.text, ctx.sender, ctx.now, review)
        updated = await self.store.get(found.id)
        assert updated is not None
        await self.runner.post_outcome(updated, ctx.event.event_id)
        if ctx.room_id != found.room_id or ctx.event.thread_root != found.discussion_root:
            when = (
                f" I'll bring it back up {format_when(review, found.zone, ctx.now)}."
                if review
                else ""
            )
            await ctx.reply(f"Recorded the outcome of {found.label} in its thread.{when}")

    # -- votes given with the poll's buttons ---------------------------------------------------
    @on(EventKind.POLL_RESPONSE)
    async def on_response(self, ctx: Context) -> None:
        await self.runner.on_response(ctx.event)

    @on(EventKind.POLL_END)
    async def on_end(self, ctx: Context) -> None:
        await self.runner.on_end(ctx.event)

    @on(EventKind.REDACTION)
    async def on_redaction(self, ctx: Context) -> None:
        """A redacted vote (button or typed) stops counting, as it does in every client. A
        redaction only ever applies in its own room."""
        if ctx.event.redacts:
            await self.store.delete_response(ctx.event.redacts, ctx.event.room_id)

    # -- hooks for the rest of civicbot --------------------------------------------------------
    async def digest_section(
        self, room_id: str, since: datetime, until: datetime
    ) -> DigestSection | None:
        prefix = self.ctx.settings.bot.command_prefix
        values = await reports.digest_values(
            self.store, self.runner, room_id, since, until, self.ctx.clock.now(), prefix
        )
        if values is None:
            return None
        rendered = self.ctx.templates.render("digest", **values)
        return DigestSection("Polls and decisions", rendered.text, rendered.html, order=20)

    async def export_user_data(self, user_id: str) -> dict[str, Any] | None:
        return await reports.export_user_data(self.store, user_id)

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        removed, anonymised = await self.store.forget(user_id)
        for poll in await self.store.unfinished():
            self.runner.forgotten[poll.id] = await self.store.forgotten_hashes(poll.id)
        if not (removed or anonymised):
            return None
        return ForgetReport(
            removed=removed,
            anonymised=anonymised,
            notes=[
                "Poll totals are kept; who voted for what is removed. Votes given with a poll's "
                "buttons or typed in a room are room events: a moderator can redact them."
            ],
        )
