"""What happens to a consultation over time: closing (by its deadline or by hand), the summary
and the councillor's CSV, the response fanned out to those who asked for it, and the
accountability notice when no response comes. Used by the handlers and by the jobs alike: each
change is recorded in the same transaction as the engine's promise of what it owes people (the
outbox, ``ctx.effects``), which carries it out once, whatever instant the process dies."""

from __future__ import annotations

import functools
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from civicbot_plugins.consultations import service
from civicbot_plugins.consultations.anonymous import AnonymousAnswers
from civicbot_plugins.consultations.models import Consultation
from civicbot_plugins.consultations.service import ANONYMOUS, CLOSED, OPEN, PUBLIC
from civicbot_plugins.consultations.store import ConsultationStore

from civicbot.api import (
    DirectFile,
    DirectMessage,
    JobContext,
    PluginContext,
    Say,
    TransportError,
    format_when,
)

log = logging.getLogger(__name__)

VISIBILITY_TEXT = {
    PUBLIC: "public (shown with names at the close)",
    "private": "private (only the councillor sees them)",
    ANONYMOUS: "anonymous (I keep no link between an answer and who gave it)",
}


def values(
    c: Consultation, questions: list[service.Question], zone: ZoneInfo, now: datetime
) -> dict[str, Any]:
    """What every template about one consultation is given."""
    shown = c.closed_at if c.closed_at and c.state != OPEN else c.closes_at
    return {
        "c": c,
        "questions": questions,
        "letters": service.LETTERS,
        "closes": format_when(datetime.fromtimestamp(shown, UTC), zone, now),
        "visibility_text": VISIBILITY_TEXT[c.visibility],
    }


class ConsultationRunner:
    """Closing, summaries, responses and the overdue notice for every consultation."""

    def __init__(self, ctx: PluginContext[Any], store: ConsultationStore, anon: AnonymousAnswers):
        self.ctx, self.store, self.anon = ctx, store, anon

    # -- timers --------------------------------------------------------------------------------
    async def start(self) -> None:
        now = self.ctx.clock.now().timestamp()
        for c in await self.store.in_state(OPEN, CLOSED):
            if c.state == OPEN and c.closes_at > now:
                self.arm_close(c)
            elif c.state == CLOSED and c.summary_posted:
                await self.arm_overdue(c, only_future=True)

    async def _ask_again_for_lost_answers(self) -> None:
        """Anonymous answers wait in memory for their batch (see :mod:`anonymous`): those held
        when the bot stopped were never stored, so their people are asked to answer again."""
        lost = await self.anon.lost()
        told = []
        for entry in lost:
            c = await self.store.get(int(entry.item.split(":")[1]))
            if c is None or c.state != OPEN:
                told.append(entry)
                continue
            text = (
                f"I restarted before your anonymous answers to {c.label} were stored, so they "
                f"were not counted. Please answer again: type {self.ctx.prefix}answer {c.label}."
            )
            try:
                room = await self.ctx.direct_room(entry.who)
                await self.ctx.send(room, text, key=f"anon-lost:{secrets.token_hex(8)}")
                told.append(entry)
            except TransportError as exc:  # asked at the next start instead
                log.warning("could not ask someone to answer %s again: %s", c.label, exc)
        await self.anon.asked_again(told)

    async def caught_up(self) -> None:
        """Closes and notices that came due while the bot was down (past times run at once)."""
        await self._ask_again_for_lost_answers()
        now = self.ctx.clock.now().timestamp()
        for c in await self.store.in_state(OPEN, CLOSED):
            if c.state == OPEN and c.closes_at <= now:
                self.arm_close(c)
            elif c.state == CLOSED and not c.summary_posted:
                self.arm_close(c)  # closed by hand but stopped before the summary went out
            elif c.state == CLOSED:
                await self.arm_overdue(c, only_future=False)

    def arm_close(self, c: Consultation) -> None:
        when = datetime.fromtimestamp(c.closes_at, UTC)
        self.ctx.jobs.at(f"close:{c.id}", when, functools.partial(self._close_job, c.id))

    async def arm_overdue(self, c: Consultation, only_future: bool) -> None:
        if c.overdue_noticed_at is not None or c.closed_at is None:
            return
        config = await self.ctx.config(c.room_id)
        due = datetime.fromtimestamp(c.closed_at, UTC) + timedelta(days=config.respond_within_days)
        if only_future and due <= self.ctx.clock.now():
            return  # caught_up() runs it, after the backlog (a response may be in it)
        self.ctx.jobs.at(f"overdue:{c.id}", due, functools.partial(self._overdue_job, c.id))

    async def _close_job(self, consultation_id: int, job: JobContext[Any]) -> None:
        c = await self.store.get(consultation_id)
        if c is not None:
            await self.close(c)

    async def _overdue_job(self, consultation_id: int, job: JobContext[Any]) -> None:
        c = await self.store.get(consultation_id)
        if c is None or c.state != CLOSED or c.overdue_noticed_at is not None:
            return  # answered meanwhile, or the notice went out already (before a restart)
        days = service.days_waiting(c.closed_at or 0, int(job.now.timestamp()))
        notice = job.render("overdue", c=c, days=days, author=c.author)
        # Marked and promised together: posted once by the engine, even if this send gives
        # up (it was marked after the send, so a job that gave up left it to the next start).
        key = f"overdue:{c.id}"
        async with self.ctx.db.transaction():
            if await self.store.mark_overdue_noticed(c.id, int(job.now.timestamp())):
                say = Say(c.room_id, notice.text, notice.html, mentions=(c.author,))
                await self.ctx.effects.promise(key, say)
        await self.ctx.effects.carry_out(key)

    # -- closing -------------------------------------------------------------------------------
    async def close(self, c: Consultation, event_id: str | None = None) -> None:
        """Close (once; by the command ``event_id``, or by its deadline), post the summary in
        the thread and DM the councillor the CSV. Safe to repeat: the summary and the CSV are
        promised once, with the mark, and the engine carries them out."""
        now = int(self.ctx.clock.now().timestamp())
        if c.state == OPEN:
            await self.store.close(c.id, now, event_id)
        fresh = await self.store.get(c.id)
        assert fresh is not None
        if fresh.summary_posted:
            return
        self.ctx.jobs.cancel(f"close:{c.id}")
        summary, withheld = await self.summary(fresh)
        zone = await self.ctx.timezone(fresh.room_id)
        questions = await self.store.questions(fresh.id)
        await self.show(fresh, f"closed:{fresh.id}")  # the announcement stops asking
        text = self.ctx.render(
            "summary",
            **values(fresh, questions, zone, self.ctx.clock.now()),
            s=summary,
            withheld=withheld,
            rule=service.RULE,
            author=fresh.author,
        )
        csv = await self.csv(fresh)
        # Marked and promised together: the engine posts the summary and sends the CSV once
        # each, whatever instant the process dies and however long the homeserver is away.
        summary_key, csv_key = f"summary:{fresh.id}", f"csv:{fresh.id}"
        async with self.ctx.db.transaction():
            if await self.store.mark_summary_posted(fresh.id):
                say = Say(fresh.room_id, text.text, text.html, thread_root=fresh.root_event)
                await self.ctx.effects.promise(summary_key, say)
                name = f"consultation-{fresh.label}.csv"
                await self.ctx.effects.promise(
                    csv_key, DirectFile(fresh.author, csv, name, "text/csv")
                )
        await self.ctx.effects.carry_out(summary_key)
        await self.ctx.effects.carry_out(csv_key)
        await self.arm_overdue(fresh, only_future=False)

    async def show(self, c: Consultation, change: str) -> None:
        """Edit the consultation's announcement to what is true now: closed, or answered.
        ``change`` names the change, so a repeat edits with the same transaction ids."""
        zone = await self.ctx.timezone(c.room_id)
        now = self.ctx.clock.now()
        questions = await self.store.questions(c.id)
        announce = self.ctx.render("announce", **values(c, questions, zone, now))
        await self.ctx.refresh(c.label, announce, key=change)

    async def minimum(self, c: Consultation) -> int:
        return c.threshold((await self.ctx.config(c.room_id)).counts_minimum)

    async def bundles(self, c: Consultation) -> list[tuple[str, dict[int, str]]]:
        if c.visibility == ANONYMOUS:
            # Once it has closed, whatever still waits for its batch is written, however few:
            # the councillor's export needs every answer (input is never a dead end). Fewer
            # than the threshold in all, and the two sides of the store link them by their
            # number alone whatever the batches; the published counts are withheld then.
            return await self.anon.bundles(c.id, 1 if c.state != OPEN else None)
        return await self.store.bundles(c.id)

    async def summary(self, c: Consultation) -> tuple[service.Summary, int]:
        """The summary, and the minimum withheld under (0: nothing withheld)."""
        questions = await self.store.questions(c.id)
        bundles = await self.bundles(c)
        summary = service.summarise(questions, bundles, show_texts=c.visibility == PUBLIC)
        minimum = await self.minimum(c)
        # In the room everyone knows who said they answered: with one or two respondents, the counts
        # of a private or anonymous consultation would tell how each of them answered.
        hidden = c.visibility != PUBLIC
        withheld = minimum if hidden and 0 < summary.people < minimum else 0
        return summary, withheld

    async def csv(self, c: Consultation) -> bytes:
        return service.csv_export(await self.store.questions(c.id), await self.bundles(c))

    async def people(self, c: Consultation) -> int:
        if c.visibility == ANONYMOUS:
            return await self.anon.voter_count(c.id)
        return await self.store.respondent_count(c.id)

    async def followers(self, c: Consultation) -> list[str]:
        if c.visibility == ANONYMOUS:
            return await self.anon.followers(c.id)
        return await self.store.followers(c.id)

    # -- "you said, we did" --------------------------------------------------------------------
    async def publish(
        self, c: Consultation, source_event: str, kind: str, status: str, text: str, author: str
    ) -> int:
        """Record a response or update, post it in the thread and DM it to every follower;
        returns how many followers it goes to. The record and every promise are written in one
        transaction and carried out by the engine: each follower hears it once, even across a
        crash or a homeserver away for longer than a send waits."""
        message = self.ctx.render("update", c=c, kind=kind, status=status, text=text, author=author)
        followers = await self.followers(c)
        keys = [f"post:{source_event}"] + [
            f"follow:{source_event}:{n}" for n in range(len(followers))
        ]
        now = int(self.ctx.clock.now().timestamp())
        async with self.ctx.db.transaction():
            if await self.store.add_update(c, source_event, kind, status, text, author, now):
                say = Say(c.room_id, message.text, message.html, thread_root=c.root_event)
                await self.ctx.effects.promise(keys[0], say)
                for key, person in zip(keys[1:], followers, strict=True):
                    dm = DirectMessage(person, message.text, message.html)
                    await self.ctx.effects.promise(key, dm)
        fresh = await self.store.get(c.id)
        if fresh is not None:  # the announcement says the council has responded
            await self.show(fresh, f"{kind}:{source_event}")
        for key in keys:
            await self.ctx.effects.carry_out(key)
        return len(followers)
