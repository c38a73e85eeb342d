"""``!consult``, ``!answer``, ``!statement``, ``!consult close|show``, ``!respond``, ``!update``,
``!consultations``.

Thin handlers: reading input and the rules are in :mod:`service`, SQL in :mod:`store` and
:mod:`anonymous`, closing and responses in :mod:`lifecycle`, the DM walk-through in :mod:`walk`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from civicbot_plugins.consultations import service
from civicbot_plugins.consultations.anonymous import AnonymousAnswers
from civicbot_plugins.consultations.config import ConsultationsConfig
from civicbot_plugins.consultations.lifecycle import ConsultationRunner, values
from civicbot_plugins.consultations.migrations import MIGRATIONS
from civicbot_plugins.consultations.models import Consultation
from civicbot_plugins.consultations.service import (
    ANONYMOUS,
    CLOSED,
    OPEN,
    AnswerError,
    ConsultationInputError,
)
from civicbot_plugins.consultations.store import ConsultationStore
from civicbot_plugins.consultations.walk import WalkThrough

from civicbot.api import (
    CommandError,
    Context,
    Converter,
    DateError,
    DigestSection,
    EventKind,
    ForgetReport,
    ItemId,
    Lines,
    Plugin,
    PublicSection,
    Rest,
    Role,
    UsageError,
    clean_text,
    command,
    format_when,
    on,
    parse_when,
    whole_number,
)

COUNCILLOR = "councillor"
Ctx = Context[ConsultationsConfig]
NO_TEXT = Rest("")


class ConsultationArg(Converter):
    """``C-2`` → that consultation, if it belongs to this room (or, in a DM, to a room the
    person is in)."""

    metavar = "C-number"

    async def convert(self, raw: str, ctx: Context[Any]) -> Consultation:
        number = ItemId("C").convert(raw, ctx)
        found = await ConsultationStore(ctx.plugin.db).get(number)
        if found is not None and found.room_id != ctx.room_id:
            members = await ctx.plugin.rooms.joined_members(found.room_id)
            if ctx.sender not in members or not await ctx.is_direct():
                found = None
        if found is None:
            raise CommandError(
                f"There's no consultation C-{number} here ({ctx.prefix}consultations lists them)."
            )
        return found


CArg = Annotated[Consultation, ConsultationArg()]


class ConsultationsPlugin(Plugin[ConsultationsConfig]):
    name = "consultations"
    description = (
        "Consultations that close the loop: questions, a summary, and the council's reply."
    )
    migrations = MIGRATIONS
    roles = {COUNCILLOR: "posts consultations and responds to them"}
    templates = ("announce", "digest", "list", "overdue", "show", "summary", "update")

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        self.store = ConsultationStore(ctx.db)
        self.anon = AnonymousAnswers(ctx.db, ctx.private_store)
        self.runner = ConsultationRunner(ctx, self.store, self.anon)
        self.walks = WalkThrough(self.store, self.anon)
        # The public page's summaries of closed consultations, by (id, counts_minimum).
        self.heard: dict[tuple[int, int], tuple[int, tuple[str, ...], str]] = {}

    async def setup(self) -> None:
        await self.store.load_walkers()
        await self.runner.start()

    async def room_replaced(self, old_room: str, new_room: str) -> None:
        """A room upgrade: consultations still open or awaiting the council's response move
        to the new room, where their close, summary and accountability notice are posted."""
        await self.ctx.db.execute(
            "UPDATE consultations_consultations SET room_id = ? WHERE room_id = ? "
            "AND state IN ('open', 'closed')",
            (new_room, old_room),
        )

    async def caught_up(self) -> None:
        await self.runner.caught_up()

    async def teardown(self) -> None:
        await self.anon.close()

    async def _may_act(self, ctx: Ctx, c: Consultation) -> bool:
        """The consultation's councillor, another councillor of its room, or a moderator."""
        perms = self.ctx.permissions
        return ctx.sender == c.author or await perms.has(c.room_id, ctx.sender, COUNCILLOR)

    # -- posting -------------------------------------------------------------------------------
    @command("consult", open_text=True, examples=(service.EXAMPLE,))
    async def consult(self, ctx: Ctx, spec: Lines) -> None:
        """Post a consultation (councillors): a title, a description, `closes <when>`, questions.

        Parts are separated by | or new lines. Questions: `text: …` (free text), `one: Question?
        A / B / C` (choose one), `several: Question? A / B / C` (choose one or more) and
        `statement: …` (agree / disagree / pass). Add `private` (answers seen by the councillor
        only) or `anonymous` (no link between answers and people), and `moderated` to approve
        residents' statements first."""
        words = spec[0].split() if spec and spec[0].strip() else []
        first = words[0].lower() if words else ""
        # "!consult show C-9" of a consultation that isn't there comes here when the subcommand
        # refuses the id: say so to everyone, as the subcommand would have.
        if first in ("close", "show") and len(spec) == 1:
            if len(words) == 2:
                try:
                    number = ItemId("C").convert(words[1], ctx)
                except UsageError:
                    number = None
                if number is not None:
                    raise CommandError(
                        f"There's no consultation C-{number} here "
                        f"({ctx.prefix}consultations lists them)."
                    )
            raise CommandError(f"Say which consultation: {ctx.prefix}consult {first} C-2.")
        if not await ctx.has_role(COUNCILLOR):
            raise CommandError(
                f"Sorry, only councillors can post a consultation. A moderator can make you one "
                f"with {ctx.prefix}role grant {ctx.sender} councillor."
            )
        try:
            parsed = service.parse_consultation(list(spec))
        except ConsultationInputError as exc:
            raise CommandError(f"{exc}\nFor example: {service.EXAMPLE}") from None
        zone = await ctx.timezone()
        try:
            closes = await asyncio.to_thread(parse_when, parsed.closes_text, zone, ctx.now)
        except DateError as exc:
            raise CommandError(str(exc)) from None
        if closes - ctx.now < timedelta(minutes=5):
            raise CommandError("That closes too soon: give people at least a few minutes.")
        c = await self.store.create(
            ctx.event.event_id,
            ctx.room_id,
            ctx.sender,
            parsed,
            int(closes.timestamp()),
            int(ctx.now.timestamp()),
            counts_minimum=ctx.config.counts_minimum,
        )
        questions = await self.store.questions(c.id)
        # The announcement is the consultation's post: edited when it closes and is answered.
        root = await ctx.reply(
            self.ctx.render("announce", **values(c, questions, zone, ctx.now)),
            thread=False,
            item=c.label,
        )
        if root:
            await self.store.set_root(c.id, root)
            self.runner.arm_close(c)

    @command("consult close", parent=consult, examples=("!consult close C-2",))
    async def close(self, ctx: Ctx, c: CArg) -> None:
        """Close a consultation now and post its summary (its councillor or a moderator)."""
        if not await self._may_act(ctx, c):
            raise CommandError(
                f"Only {c.author} (who posted {c.label}), another councillor or a moderator "
                "can close it."
            )
        replayed = c.close_event == ctx.event.event_id  # this very command, after a crash
        if not replayed and (c.state not in (OPEN, CLOSED) or c.summary_posted):
            raise CommandError(f"{c.label} is closed already ({ctx.prefix}consult show {c.label}).")
        await self.runner.close(c, ctx.event.event_id)
        if ctx.event.thread_root != c.root_event or ctx.room_id != c.room_id:
            await ctx.reply(f"{c.label} is closed; the summary is in its thread.")

    @command("consult show", parent=consult, examples=("!consult show C-2",))
    async def show(self, ctx: Ctx, c: CArg) -> None:
        """Show a consultation: its questions, state, and the council's responses."""
        zone = await ctx.timezone()
        now = int(ctx.now.timestamp())
        waiting = service.days_waiting(c.closed_at, now) if c.state == CLOSED and c.closed_at else 0
        await ctx.reply_template(
            "show",
            **values(c, await self.store.questions(c.id), zone, ctx.now),
            people=await self.runner.people(c),
            updates=await self.store.updates(c.id),
            waiting=waiting,
        )

    @command("consultations")
    async def consultations(self, ctx: Ctx) -> None:
        """List this room's open and recent consultations with their state (in a DM with me:
        the open ones in all your rooms)."""
        zone = await ctx.timezone()
        found = await self.store.in_room(ctx.room_id)
        if not found and await ctx.is_direct():
            found = [
                c
                for c in await self.store.in_state(OPEN)
                if ctx.sender in await self.ctx.rooms.joined_members(c.room_id)
            ]
        items = [
            {"c": c, "closes": format_when(datetime.fromtimestamp(c.closes_at, UTC), zone, ctx.now)}
            for c in found
        ]
        await ctx.reply_template("list", items=items)

    # -- answering -----------------------------------------------------------------------------
    @command(
        "answer",
        examples=(
            "!answer C-2 1 More benches please",
            "!answer C-2 2 b",
            "!answer C-2 3 agree",
            "!answer C-2",
        ),
    )
    async def answer(self, ctx: Ctx, c: CArg, answer: Rest = NO_TEXT) -> None:
        """Answer a consultation: the question number and your answer, or nothing to be asked
        one question at a time by direct message. `follow` / `unfollow` choose whether the
        council's response is sent to you."""
        if c.state != OPEN:
            raise CommandError(
                f"{c.label} has closed, so it takes no more answers. See what came of it with "
                f"{ctx.prefix}consult show {c.label}."
            )
        direct = await ctx.is_direct()
        text = clean_text(answer).strip()
        if c.visibility == ANONYMOUS:
            if await self.anon.has_answered(c.id, ctx.sender):
                raise CommandError(
                    f"You've already answered {c.label}; anonymous answers can't be changed."
                )
            await self.walks.start(ctx, c, ctx.sender)
            if not direct:
                await ctx.reply(
                    f"{c.label} is anonymous, so please don't answer here: I've sent you the "
                    "questions by direct message."
                    + (" (Nothing you typed here was stored.)" if text else "")
                )
            return
        if not text:
            await self.walks.start(ctx, c, ctx.sender)
            if not direct:
                await ctx.reply("I've sent you the questions by direct message.")
            return
        now = int(ctx.now.timestamp())
        word = text.lower()
        if word in ("follow", "unfollow"):
            await self.store.set_follow(c.id, ctx.sender, word == "follow", now)
            await ctx.reply(
                f"I'll send you the council's response to {c.label}."
                if word == "follow"
                else f"I won't send you the response to {c.label}."
            )
            return
        number_text, _, value_text = text.partition(" ")
        questions = await self.store.questions(c.id)
        try:
            number: int | None = whole_number(number_text, 1, len(questions))
        except UsageError:
            number = None
        question = next((q for q in questions if q.number == number), None)
        if question is None:
            raise CommandError(
                f"{c.label} has questions 1 to {len(questions)}: type {ctx.prefix}answer {c.label} "
                f"<question number> <your answer>, for example {ctx.prefix}answer {c.label} 1 …"
            )
        try:
            value = service.read_answer(question, value_text)
        except AnswerError as exc:
            raise CommandError(
                f"{exc} For example: {ctx.prefix}answer {c.label} {question.number} …"
            ) from None
        changed = await self.store.answer(c.id, ctx.sender, question.number, value, now)
        verb = "changed" if changed else "noted"
        await ctx.reply(
            f"Your answer to {c.label} question {question.number} is {verb}. You can change it "
            f"until the close. Type {ctx.prefix}answer {c.label} follow to get the council's "
            "response by DM."
        )

    @on(EventKind.MESSAGE, when=lambda self, event: self.store.may_walk(event.sender))
    async def dm_message(self, ctx: Ctx) -> bool:
        """Plain text in someone's DM with the bot carries their walk-through on. Any other
        message was not for this hook: False tells the core nothing was done with it."""
        if ctx.event.body.startswith(ctx.prefix):
            return False
        # Cheap check first: most messages are from people with no walk-through going.
        walk = await self.store.walk(ctx.sender)
        if walk is None or walk[1] != ctx.room_id or not await ctx.is_direct():
            return False
        await self.walks.handle(ctx)
        return True

    # -- statements ----------------------------------------------------------------------------
    @command("statement", examples=("!statement C-2 The park should have more bins",))
    async def statement(self, ctx: Ctx, c: CArg, text: Rest) -> None:
        """Add a statement for others to agree or disagree with."""
        text = Rest(clean_text(text).strip())
        if c.state != OPEN:
            raise CommandError(f"{c.label} has closed, so it takes no new statements.")
        if not text or len(text) > 300:
            raise CommandError(
                "Type the statement after the id, under 300 characters: "
                f"{ctx.prefix}statement {c.label} <text>"
            )
        if await self.store.statement_by_text(c.id, text) is not None:
            raise CommandError(
                "That statement is there already: agree or disagree with it instead."
            )
        if c.moderated and not await self._may_approve(ctx, c):
            pending = await self.store.propose(c.id, ctx.event.event_id, text, ctx.sender)
            await ctx.reply(
                f"Thanks: your statement waits for a councillor or moderator to approve it "
                f"({ctx.prefix}statement approve {c.label} {pending})."
            )
            return
        await self._add_statement(ctx, c, text, ctx.sender)

    async def _may_approve(self, ctx: Ctx, c: Consultation) -> bool:
        perms = self.ctx.permissions
        return await self._may_act(ctx, c) or await perms.has(c.room_id, ctx.sender, Role.MODERATOR)

    async def _add_statement(self, ctx: Ctx, c: Consultation, text: str, proposer: str) -> None:
        number = await self.store.add_statement(c.id, text, proposer)
        await ctx.reply(
            f"Statement {number} added to {c.label}: {text}\nAgree or disagree with "
            f"{ctx.prefix}answer {c.label} {number} agree (or disagree, or pass)."
        )

    @command("statement approve", parent=statement, examples=("!statement approve C-2 1",))
    async def approve(self, ctx: Ctx, c: CArg, pending: int) -> None:
        """Approve a resident's statement (a councillor or moderator)."""
        await self._decide(ctx, c, pending, "approved")

    @command("statement reject", parent=statement, examples=("!statement reject C-2 1",))
    async def reject(self, ctx: Ctx, c: CArg, pending: int) -> None:
        """Turn down a resident's statement (a councillor or moderator)."""
        await self._decide(ctx, c, pending, "rejected")

    async def _decide(self, ctx: Ctx, c: Consultation, pending_id: int, state: str) -> None:
        if not await self._may_approve(ctx, c):
            verb = "approve" if state == "approved" else "turn down"
            raise CommandError(f"Only a councillor or a moderator can {verb} statements.")
        found = await self.store.pending(c.id, pending_id)
        if found is None or found[2] != "waiting":
            waiting = ", ".join(str(i) for i, _ in await self.store.waiting(c.id)) or "none"
            raise CommandError(
                f"No statement {pending_id} is waiting in {c.label} (waiting: {waiting})."
            )
        await self.store.decide(pending_id, state)
        if state == "approved":
            await self._add_statement(ctx, c, found[0], found[1])
        else:
            await ctx.reply(f"Statement {pending_id} of {c.label} was not added.")

    # -- "you said, we did" --------------------------------------------------------------------
    @command("respond", examples=("!respond C-2 We'll add 4 benches this spring",))
    async def respond(self, ctx: Ctx, c: CArg, text: Rest) -> None:
        """Post the council's response to a closed consultation (its councillor)."""
        await self._publish(ctx, c, "response", "", text)

    @command("update", examples=("!update C-2 in progress The benches are ordered",))
    async def update(self, ctx: Ctx, c: CArg, status_and_text: Rest) -> None:
        """Post an update after the response: in progress, done or not going ahead, and why."""
        try:
            status, text = service.parse_status(status_and_text)
        except AnswerError as exc:
            raise CommandError(str(exc)) from None
        await self._publish(ctx, c, "update", status, text)

    async def _publish(self, ctx: Ctx, c: Consultation, kind: str, status: str, text: str) -> None:
        text = clean_text(text).strip()
        if not await self._may_act(ctx, c):
            raise CommandError(
                f"Only the councillor of {c.label} ({c.author}) can post its response. If you're "
                f"a councillor, ask a moderator to type {ctx.prefix}role grant {ctx.sender} "
                "councillor."
            )
        refusal = service.publish_refusal(c.state, kind, c.label, text, ctx.prefix)
        if refusal and not await self.store.recorded_update(ctx.event.event_id):
            raise CommandError(refusal)  # (a replay of this very command was accepted before)
        sent = await self.runner.publish(c, ctx.event.event_id, kind, status, text, ctx.sender)
        people = "person" if sent == 1 else "people"
        await ctx.reply(
            f"Posted in the thread of {c.label} and sent by direct message to {sent} {people} "
            "who asked for it."
        )

    # -- hooks ---------------------------------------------------------------------------------
    async def digest_section(
        self, room_id: str, since: datetime, until: datetime
    ) -> DigestSection | None:
        from civicbot_plugins.consultations.digest import room_digest

        return await room_digest(self, room_id, since, until)

    async def public_section(self, room_id: str) -> PublicSection | None:
        from civicbot_plugins.consultations.digest import public_section

        return await public_section(self, room_id)

    async def personal_digest_section(
        self, user_id: str, since: datetime, until: datetime
    ) -> DigestSection | None:
        from civicbot_plugins.consultations.digest import personal_digest

        return await personal_digest(self, user_id, since, until)

    async def export_user_data(self, user_id: str) -> dict[str, Any] | None:
        answers = await self.store.export(user_id)
        anonymous = await self.anon.answered_by(user_id)
        if not answers and not anonymous:
            return None
        return {
            "answers": answers,
            "answered_anonymously": [f"C-{n}" for n in anonymous],
            "note": "Anonymous answers are not linked to you, so they can't be listed here.",
        }

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        named = await self.store.forget(user_id)
        anonymous = await self.anon.forget(user_id)
        if not named and not anonymous:
            return None
        return ForgetReport(anonymised=named + anonymous)
