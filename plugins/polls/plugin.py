"""``!poll``, ``!vote``, ``!rank``, ``!poll close|show|edit|cancel``, ``!polls``, ``!outcome``.

Thin handlers: they read the input and hand over to the pure rules in :mod:`service` (who may
vote, change or cancel what, where and when; counting), the store, the timers in
:mod:`lifecycle` and the edit and cancel events in :mod:`changes`. Every time shown is in the
zone of the room the answer goes to, as that room is set now.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Any

from civicbot_plugins.polls import render, reports, service
from civicbot_plugins.polls.changes import PollChanges
from civicbot_plugins.polls.choices import Choice, VoteError, parse_choice, parse_ranking
from civicbot_plugins.polls.config import PollsConfig
from civicbot_plugins.polls.lifecycle import PollRunner
from civicbot_plugins.polls.migrations import MIGRATIONS
from civicbot_plugins.polls.models import OPEN, POSTING, NewPoll, Poll
from civicbot_plugins.polls.parsing import (
    PollInputError,
    PollSpec,
    UnclearSetting,
    parse_outcome,
    parse_poll_input,
    unreadable_closing,
)
from civicbot_plugins.polls.secret import ALREADY, COUNTED
from civicbot_plugins.polls.service import PollKind
from civicbot_plugins.polls.store import PollStore

from civicbot.api import (
    CommandError,
    Context,
    DateError,
    DigestSection,
    EventKind,
    ForgetReport,
    ItemId,
    Plugin,
    PublicDecision,
    PublicSection,
    Rest,
    Role,
    command,
    format_when,
    on,
    parse_when,
)

MIN_DURATION = timedelta(minutes=5)
PollId = Annotated[int, ItemId("P")]  # accepts P-12, p12 or 12
EXAMPLE = "!poll Which day for the litter pick? | Saturday | Sunday | closes friday 18:00"
PROPOSAL_EXAMPLE = "!poll Adopt the new bin rota? | proposal | secret"
SUBCOMMANDS = ("close", "show", "edit", "cancel")


class PollsPlugin(Plugin[PollsConfig]):
    name = "polls"
    description = "Polls, proposals and ranked-choice decisions that every Matrix client can use."
    Config = PollsConfig
    templates = (
        "announce", "closed", "digest", "list", "outcome", "personal", "reminder", "results",
        "review", "show",
    )  # fmt: skip
    migrations = MIGRATIONS

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        self.store = PollStore(ctx.db, ctx.keyed_hash, ctx.private_store)
        self.runner = PollRunner(ctx, self.store)
        # The public page's decided polls, each read once: {poll id: (version, decision)}.
        self.decisions: dict[int, tuple[str, PublicDecision]] = {}
        self.changes = PollChanges(ctx, self.store, self.runner)

    async def setup(self) -> None:
        # Secret ballots rely on deleted rows being overwritten (see secret.py); the core sets
        # this too, but the promise is ours to keep.
        await self.ctx.db.execute("PRAGMA secure_delete=ON")
        await self.runner.start()

    async def caught_up(self) -> None:
        await self.runner.caught_up()

    async def room_replaced(self, old_room: str, new_room: str) -> None:
        """A room upgrade: polls still open carry on in the new room (their deadlines are
        read by id, so the armed jobs close them there); closed ones stay with their history."""
        await self.ctx.db.execute(
            "UPDATE polls_polls SET room_id = ? WHERE room_id = ? "
            "AND state IN ('posting', 'open', 'closing')",
            (new_room, old_room),
        )
        for poll in await self.store.unfinished():
            self.runner.track(poll)

    async def teardown(self) -> None:
        self.runner.stop()
        await self.store.secret.close()

    # -- creating and changing -----------------------------------------------------------------
    @command("poll", open_text=True, examples=(EXAMPLE, PROPOSAL_EXAMPLE))
    async def poll(self, ctx: Context[PollsConfig], question_and_options: Rest) -> None:
        """Start a poll: a question, then options, separated by | or on new lines.

        Add settings as extra parts: `closes friday 18:00`, `until friday` or `closes in 3 days`
        (default: in a week), `up to 2` (multiple choice), `ranked` (ranked choice), `proposal`
        (agree, abstain, disagree or block), `secret` (votes by direct message only, totals
        published) and `hidden` (results only at the close). Put an option in quotes if it
        looks like a setting."""
        text = question_and_options
        poll = await self.store.by_source(ctx.event.event_id)
        if poll is None:
            first = text.split(None, 1)[0].lower() if text.strip() else ""
            if first in SUBCOMMANDS and "|" not in text and "\n" not in text:
                # "!poll close" with a missing or mistyped id lands here, not in a new poll.
                raise CommandError(service.subcommand_hint(first, ctx.prefix))
            poll = await self._create(ctx, text)
        if poll.state in (POSTING, OPEN):
            await self._post(ctx, poll)

    async def _create(self, ctx: Context[PollsConfig], text: str) -> Poll:
        config = ctx.config
        level = (await self.ctx.permissions.power_levels(ctx.room_id)).level(ctx.sender)
        if level < config.create_level:  # moderators always may, whatever their level
            moderator = await ctx.has_role(Role.MODERATOR)
            refusal = service.create_refusal(level, config.create_level, moderator)
            if refusal:
                raise CommandError(refusal)
        zone = await ctx.timezone()
        spec, closes = await self._read(text, zone, ctx.now)
        new = NewPoll.typed(ctx, spec, zone.key, closes, spec.options)
        new.closes_at = closes or ctx.now + timedelta(days=config.default_duration_days)
        new.min_secret_voters = config.min_secret_voters
        poll, _ = await self.store.create(new)
        return poll

    async def _read(self, text: str, zone: Any, now: datetime) -> tuple[PollSpec, datetime | None]:
        """The poll typed, and its closing time if one was given (read in ``zone``)."""
        try:
            spec = parse_poll_input(text)
        except UnclearSetting as exc:  # a question back: an example would only distract
            raise CommandError(str(exc)) from None
        except PollInputError as exc:
            raise CommandError(f"{exc}\nFor example: {EXAMPLE}") from None
        if not spec.closes_text:
            return spec, None
        try:
            closes = await asyncio.to_thread(parse_when, spec.closes_text, zone, now)
        except DateError as exc:
            message = unreadable_closing(spec, str(exc)) if spec.closes_loose else str(exc)
            raise CommandError(message) from None
        if closes - now < MIN_DURATION:
            raise CommandError("That closes too soon: give people at least a few minutes.")
        return spec, closes

    async def _post(self, ctx: Context[PollsConfig], poll: Poll) -> None:
        """Announce (plain text first, echoing the closing time), then the native poll. Replayed
        after a crash, the same sends repeat with the same transaction ids."""
        zone = await ctx.timezone()
        values = render.announce_values(poll, ctx.now, ctx.prefix, zone, self.ctx.rooms.bot_user_id)
        # Recorded as the poll's post: the engine edits it when the poll closes.
        text_id = await ctx.reply(self.ctx.templates.render("announce", **values), item=poll.label)
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
        self.runner.arm_reminder(poll, ctx.config.reminder_hours)

    @command(
        "poll edit",
        parent=poll,
        examples=("!poll edit P-12 Which day? | Saturday | Sunday | Monday",),
    )
    async def edit(
        self, ctx: Context[PollsConfig], poll: PollId, question_and_options: Rest
    ) -> None:
        """Change your poll before anyone has voted: give it again as you would to !poll.

        The announcement is updated in place; the buttons come as a new poll (the old one is
        closed, as Element never shows an edited poll). A closing time left out stays as it
        was."""
        found = await self._poll_for(ctx, poll)
        replayed = found.is_open and found.edit_event_id == ctx.event.event_id
        votes = await self.store.vote_count(found.id)
        refusal = service.edit_refusal(found, ctx.sender, votes, replayed, ctx.prefix)
        if refusal:
            raise CommandError(refusal)
        if not replayed:
            zone = await ctx.timezone()
            spec, closes = await self._read(question_and_options, zone, ctx.now)
            options = service.renumbered(spec.kind, spec.options, found.edits + 1)
            new = NewPoll.typed(ctx, spec, found.timezone, closes, options)
            new.closes_at = closes or found.closes_at
            if not await self.store.apply_edit(found.id, new, ctx.event.event_id):
                raise CommandError(f"Someone has just voted in {found.label}, so it can't change.")
        edited = await self.store.get(found.id)
        assert edited is not None
        await self.changes.show_edit(ctx, edited)
        until = format_when(edited.closes_at, await ctx.timezone(), ctx.now)
        if found.start_event_id and edited.start_event_id:
            await ctx.reply(
                f"✏️ {edited.label} is updated. Its buttons are in a new poll; the old one is "
                f"closed and says so. It closes {until}."
            )
        else:
            await ctx.reply(f"✏️ {edited.label} is updated in place. It closes {until}.")

    @command("poll cancel", parent=poll, examples=("!poll cancel P-12",))
    async def cancel(self, ctx: Context[PollsConfig], poll: PollId) -> None:
        """Cancel a poll without publishing any result (its creator or a moderator)."""
        found = await self._poll_for(ctx, poll)
        replayed = found.is_cancelled and found.close_event_id == ctx.event.event_id
        may = await self._may_manage(ctx, found)
        refusal = service.cancel_refusal(found, may, replayed, ctx.prefix)
        if refusal:
            raise CommandError(refusal)
        await self.store.cancel(found.id, ctx.sender, ctx.now, ctx.event.event_id)
        cancelled = await self.store.get(found.id)
        assert cancelled is not None
        await self.changes.show_cancel(ctx, cancelled)
        await ctx.reply(
            f"{found.label} is cancelled. Its votes are discarded; no result is posted."
        )

    # -- voting --------------------------------------------------------------------------------
    @command(
        "vote",
        examples=("!vote P-12 2", "!vote P-12 1 3", "!vote P-3 block <why>", "!vote P-12 withdraw"),
    )
    async def vote(self, ctx: Context[PollsConfig], poll: PollId, choice: Rest) -> None:
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
    async def rank(self, ctx: Context[PollsConfig], poll: PollId, ranking: Rest) -> None:
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

    async def _poll_to_vote_in(self, ctx: Context[PollsConfig], poll_id: int) -> Poll:
        poll = await self._poll_for(ctx, poll_id)
        in_room = poll.room_id == ctx.room_id
        direct = not in_room and await ctx.is_direct()
        refusal = service.vote_place_refusal(poll, in_room, direct, ctx.prefix)
        if refusal:
            raise CommandError(refusal)
        return poll

    async def _cast(self, ctx: Context[PollsConfig], poll: Poll, choice: Choice) -> None:
        zone = await ctx.timezone()
        refusal = service.late_vote_refusal(poll, ctx.event.ts, ctx.now, ctx.prefix, zone)
        if poll.secret:
            await self._cast_secret(ctx, poll, choice, refusal)
            return
        if refusal:
            raise CommandError(refusal)
        voter = self.runner.voter(poll.id, poll.salt, ctx.sender)
        await self.store.add_response(
            poll.id, ctx.event.event_id, voter, choice.answers, ctx.event.ts, "text", choice.reason
        )
        chosen = render.describe_choice(poll, choice.answers) if choice.answers else ""
        await ctx.reply(service.counted_reply(poll, chosen, ctx.now, zone))

    async def _cast_secret(
        self, ctx: Context[PollsConfig], poll: Poll, choice: Choice, refusal: str | None
    ) -> None:
        withdrawing = service.withdraw_refusal(poll, choice.answers)
        if withdrawing:
            raise CommandError(withdrawing)
        threshold = poll.secret_threshold(ctx.config.min_secret_voters)
        status = await self.store.secret.cast(
            poll,
            ctx.sender,
            ctx.event.event_id,
            choice.answers,
            choice.reason,
            not refusal,
            batch=threshold,
        )
        # No pseudonym: one shared with public actions would name the voter (issue 19 §4).
        self.log.info("secret ballot for %s: %s", poll.label, status)
        if status == ALREADY and (poll.id, ctx.sender) in self.runner.asked_again:
            # Asked again after a stop, but the vote sent before it reached the bot after all.
            self.runner.asked_again.discard((poll.id, ctx.sender))
            await ctx.reply(service.counted_after_all(poll))
            return
        reply, counted = service.secret_reply(poll, status == COUNTED, status == ALREADY, refusal)
        if not counted:
            raise CommandError(reply)
        await ctx.reply(reply)

    async def _poll_for(self, ctx: Context[PollsConfig], poll_id: int) -> Poll:
        """The poll, if the sender may see it: asked in its room, or by a member elsewhere."""
        poll = await self.store.get(poll_id)
        missing = CommandError(
            f"I can't find P-{poll_id} in any room you're in. {ctx.prefix}polls lists the open "
            "polls."
        )
        if poll is None or poll.state == POSTING:
            raise missing
        if poll.room_id != ctx.room_id:
            if ctx.sender not in await self.ctx.rooms.joined_members(poll.room_id):
                raise missing
        return poll

    async def _may_manage(self, ctx: Context[PollsConfig], poll: Poll) -> bool:
        """Its creator, or a moderator of the poll's room."""
        return ctx.sender == poll.creator or await self.ctx.permissions.has(
            poll.room_id, ctx.sender, Role.MODERATOR
        )

    # -- closing and showing -------------------------------------------------------------------
    @command("poll close", parent=poll, examples=("!poll close P-12",))
    async def close(self, ctx: Context[PollsConfig], poll: PollId) -> None:
        """Close a poll now and post the results (its creator or a moderator)."""
        found = await self._poll_for(ctx, poll)
        replayed = found.close_event_id == ctx.event.event_id
        may = await self._may_manage(ctx, found)
        zone = await ctx.timezone()
        refusal = service.close_refusal(found, may, replayed, ctx.prefix, ctx.now, zone)
        if refusal:
            raise CommandError(refusal)
        closed = await self.runner.close(
            found.id, closed_by=ctx.sender, close_event_id=ctx.event.event_id
        )
        if ctx.room_id != found.room_id and closed is not None:
            await ctx.reply(f"Closed {found.label}; the results are posted in its room.")

    @command("poll show", parent=poll, examples=("!poll show P-12",))
    async def show(self, ctx: Context[PollsConfig], poll: PollId) -> None:
        """Show a poll: its options, closing time and the count so far (or its result)."""
        found = await self._poll_for(ctx, poll)
        zone = await ctx.timezone()
        name, values = await reports.show_values(
            self.store, self.runner, found, ctx.now, ctx.prefix, zone, self.ctx.rooms.bot_user_id
        )
        await ctx.reply(self.ctx.templates.render(name, **values))

    @command("polls")
    async def polls(self, ctx: Context[PollsConfig]) -> None:
        """List the open polls here with their closing times (in a DM: in all your rooms)."""
        if await ctx.is_direct():
            found = []
            for poll in await self.store.open_anywhere():
                if ctx.sender in await self.ctx.rooms.joined_members(poll.room_id):
                    found.append(poll)
        else:
            found = await self.store.open_in(ctx.room_id)
        zone = await ctx.timezone()  # in a DM: the reader's, so every row reads alike
        values = await reports.list_values(self.runner, found, ctx.now, ctx.prefix, zone)
        await ctx.reply(self.ctx.templates.render("list", **values))

    # -- outcomes ------------------------------------------------------------------------------
    @command(
        "outcome", examples=("!outcome P-12 Litter pick on Saturday 10am | review in 4 weeks",)
    )
    async def outcome(self, ctx: Context[PollsConfig], poll: PollId, decision: Rest) -> None:
        """Record what was decided after a poll closed; it is posted in the poll's thread.

        End with `| review in 3 months` (or a date) to bring it back up then."""
        found = await self._poll_for(ctx, poll)
        refusal = service.outcome_refusal(found, await self._may_manage(ctx, found), ctx.prefix)
        if refusal:
            raise CommandError(refusal)
        try:
            spec = parse_outcome(decision)
        except PollInputError as exc:
            raise CommandError(str(exc)) from None
        zone = await ctx.timezone()
        review = None
        if spec.review_text:
            try:
                review = await asyncio.to_thread(parse_when, spec.review_text, zone, ctx.now)
            except DateError as exc:
                raise CommandError(str(exc)) from None
        await self.store.set_outcome(found.id, spec.text, ctx.sender, ctx.now, review)
        updated = await self.store.get(found.id)
        assert updated is not None
        await self.runner.post_outcome(updated, ctx.event.event_id)
        if ctx.room_id != found.room_id or ctx.event.thread_root != found.discussion_root:
            when = f" I'll bring it back up {format_when(review, zone, ctx.now)}." if review else ""
            await ctx.reply(f"Recorded the outcome of {found.label} in its thread.{when}")

    # -- votes given with the poll's buttons ---------------------------------------------------
    @on(EventKind.POLL_RESPONSE)
    async def on_response(self, ctx: Context[PollsConfig]) -> None:
        await self.runner.on_response(ctx.event)

    @on(EventKind.POLL_END)
    async def on_end(self, ctx: Context[PollsConfig]) -> None:
        await self.runner.on_end(ctx.event)

    @on(EventKind.REDACTION)
    async def on_redaction(self, ctx: Context[PollsConfig]) -> None:
        """A redacted vote (button or typed) stops counting, as it does in every client. A
        redaction only ever applies in its own room."""
        if ctx.event.redacts:
            await self.store.delete_response(ctx.event.redacts, ctx.event.room_id)

    # -- hooks for the rest of civicbot --------------------------------------------------------
    async def digest_section(
        self, room_id: str, since: datetime, until: datetime
    ) -> DigestSection | None:
        prefix = self.ctx.prefix
        zone = await self.ctx.timezone(room_id)
        values = await reports.digest_values(
            self.store, self.runner, room_id, since, until, self.ctx.clock.now(), prefix, zone
        )
        if values is None:
            return None
        rendered = self.ctx.templates.render("digest", **values)
        return DigestSection("Polls and decisions", rendered.text, rendered.html, order=20)

    async def personal_digest_section(
        self, user_id: str, since: datetime, until: datetime
    ) -> DigestSection | None:
        """The open polls, in rooms ``user_id`` is in, that they have not voted in yet; for a
        secret ballot only whether they voted is looked at, never what."""
        rows = await reports.unvoted_rows(
            self.store, self.ctx, user_id, self.ctx.clock.now(), self.ctx.prefix
        )
        if not rows:
            return None
        rendered = self.ctx.templates.render("personal", rows=rows, prefix=self.ctx.prefix)
        return DigestSection("Your polls", rendered.text, rendered.html, order=20)

    async def public_section(self, room_id: str) -> PublicSection | None:
        return await reports.public_section(self.store, room_id, self.decisions)

    async def export_user_data(self, user_id: str) -> dict[str, Any] | None:
        return await reports.export_user_data(self.store, user_id)

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        removed, anonymised = await self.store.forget(user_id)
        for poll in await self.store.unfinished():
            self.runner.forgotten[poll.id] = await self.store.forgotten_hashes(poll.id)
        return reports.forget_report(removed, anonymised)
