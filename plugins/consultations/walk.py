"""The DM walk-through: the bot asks one question at a time and the person just types.

Where each person has got to is a row in ``consultations_walks`` (so a restart carries on).
Answers to a public or private consultation are stored as they come; answers to an anonymous one
are held in memory only until the last step, then stored in one piece in the anonymous file —
writing them down one by one next to the person's name is exactly the link it must not keep. A
restart in the middle of an anonymous walk-through therefore starts it again, and says so.
"""

from __future__ import annotations

from typing import Any

from civicbot_plugins.consultations import service
from civicbot_plugins.consultations.anonymous import ALREADY, AnonymousAnswers
from civicbot_plugins.consultations.models import Consultation
from civicbot_plugins.consultations.service import ANONYMOUS, OPEN, AnswerError, Question
from civicbot_plugins.consultations.store import ConsultationStore

from civicbot.api import Context, clean_text, yes_or_no

FOLLOW_STEP = 0


class WalkThrough:
    """Runs every person's walk-through; one per person at a time."""

    def __init__(self, store: ConsultationStore, anon: AnonymousAnswers):
        self.store, self.anon = store, anon
        self._drafts: dict[tuple[str, int], dict[int, str]] = {}  # anonymous answers, in memory

    async def start(self, ctx: Context[Any], c: Consultation, user: str) -> None:
        questions = await self.store.questions(c.id)
        # Asked in their DM with the bot: carry on right there.
        direct = ctx.sender == user and await ctx.is_direct()
        room = ctx.room_id if direct else await ctx.plugin.direct_room(user)
        await self.store.set_walk(user, c.id, room, questions[0].number)
        if c.visibility == ANONYMOUS:
            self._drafts[(user, c.id)] = {}
            intro = (
                f"Hello! Here are the questions of {c.label} {c.title}, one at a time. "
                "Your answers are anonymous: I store them all together at the end, with nothing "
                "that links them to you, so they can't be changed once sent."
            )
        else:
            intro = (
                f"Hello! Here are the questions of {c.label} {c.title}, one at a time. "
                "Just type your answer; 'skip' skips a question, 'stop' stops. You can change an "
                "answer until the consultation closes."
            )
        text = f"{intro}\n\n{ask(questions[0], len(questions))}"
        await (ctx.reply(text) if direct else ctx.dm(user, text))

    async def handle(self, ctx: Context[Any]) -> None:
        """A message in someone's DM with the bot: the next answer of their walk-through."""
        walk = await self.store.walk(ctx.sender)
        if walk is None or walk[1] != ctx.room_id:
            return
        consultation_id, _, step = walk
        c = await self.store.get(consultation_id)
        text = clean_text(ctx.event.body).strip()
        if c is None or c.state != OPEN:
            await self.store.end_walk(ctx.sender)
            await ctx.reply("That consultation has closed, so I've stopped asking. Thank you!")
            return
        if text.lower() in ("stop", "cancel", "quit"):
            await self.store.end_walk(ctx.sender)
            self._drafts.pop((ctx.sender, c.id), None)
            kept = (
                "Nothing was stored." if c.visibility == ANONYMOUS else "What you answered is kept."
            )
            await ctx.reply(f"Stopped. {kept} Type {ctx.prefix}answer {c.label} to start again.")
            return
        questions = await self.store.questions(c.id)
        key = (ctx.sender, c.id)
        if (
            c.visibility == ANONYMOUS
            and step == FOLLOW_STEP
            and await self.anon.replayed(c.id, c.salt, ctx.event.event_id)
        ):
            self._drafts.setdefault(key, {})  # stored before a crash: only the voter is left
        if c.visibility == ANONYMOUS and key not in self._drafts:
            self._drafts[key] = {}
            await self.store.set_walk(ctx.sender, c.id, ctx.room_id, questions[0].number)
            await ctx.reply(
                "I was restarted while you were answering, and (to keep your answers anonymous) "
                "I never wrote them down. Let's start again.\n\n"
                + ask(questions[0], len(questions))
            )
            return
        if step == FOLLOW_STEP:
            await self._finish(ctx, c, text)
            return
        question = next((q for q in questions if q.number == step), None)
        if question is None:
            await self._advance(ctx, c, questions, step)
            return
        if text.lower() != "skip":
            try:
                value = service.read_answer(question, text)
            except AnswerError as exc:
                await ctx.reply(f"{exc} (Or 'skip', or 'stop'.)")
                return
            if c.visibility == ANONYMOUS:
                self._drafts[key][question.number] = value
            else:
                await self.store.answer(
                    c.id, ctx.sender, question.number, value, int(ctx.now.timestamp())
                )
        await self._advance(ctx, c, questions, step)

    async def _advance(
        self, ctx: Context[Any], c: Consultation, questions: list[Question], step: int
    ) -> None:
        later = [q for q in questions if q.number > step]
        if later:
            await self.store.set_walk(ctx.sender, c.id, ctx.room_id, later[0].number)
            await ctx.reply(ask(later[0], len(questions)))
            return
        await self.store.set_walk(ctx.sender, c.id, ctx.room_id, FOLLOW_STEP)
        last = (
            " When you answer this, I'll store your answers anonymously."
            if c.visibility == ANONYMOUS
            else ""
        )
        await ctx.reply(
            "That's all the questions. Shall I send you the council's response by direct message "
            f"when it comes? Type yes or no.{last}"
        )

    async def _finish(self, ctx: Context[Any], c: Consultation, text: str) -> None:
        follow = yes_or_no(text)
        if follow is None:
            await ctx.reply("Type yes (send me the council's response) or no.")
            return
        if c.visibility == ANONYMOUS:
            draft = self._drafts.get((ctx.sender, c.id), {})
            outcome = await self.anon.submit(
                c.id,
                c.salt,
                ctx.sender,
                ctx.event.event_id,
                draft,
                follow,
                batch=c.threshold(ctx.config.counts_minimum),
            )
            self._drafts.pop((ctx.sender, c.id), None)
            await self.store.end_walk(ctx.sender)
            if outcome == ALREADY:
                await ctx.reply(
                    f"You've already answered {c.label}; anonymous answers can't be changed."
                )
                return
            done = f"Thank you: your answers to {c.label} are stored anonymously."
        else:
            await self.store.set_follow(c.id, ctx.sender, follow, int(ctx.now.timestamp()))
            await self.store.end_walk(ctx.sender)
            done = (
                f"Thank you: your answers to {c.label} are in. You can change one until it closes "
                f"with {ctx.prefix}answer {c.label} <number> <answer>."
            )
        tail = " I'll send you the council's response." if follow else ""
        await ctx.reply(done + tail)


def ask(question: Question, total: int) -> str:
    """One question as the walk-through asks it."""
    lines = [f"Question {question.number} of {total}: {question.prompt}"]
    lines += [f"   {service.LETTERS[i]}) {option}" for i, option in enumerate(question.options)]
    lines.append(f"({question.how_to_answer()})")
    return "\n".join(lines)
