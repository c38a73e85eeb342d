"""``!remind``: reminders a room sets for itself. The example plugin of docs/plugins.md.

It shows every part of the plugin API once: typed commands with converters (one of them async),
a subcommand, a config model rooms may override, a table with migrations, a scheduled job per
reminder that is re-armed at start, overdue work done in ``caught_up``, templates, and the
digest / export / forget hooks.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import Field

from civicbot.api import (
    CommandError,
    Context,
    Converter,
    DigestSection,
    ForgetReport,
    ItemId,
    JobContext,
    Lines,
    Plugin,
    PluginConfig,
    Role,
    command,
    format_when,
    resolve_when,
)
from civicbot_reminders.store import MIGRATIONS, Reminder, ReminderStore

LATE_LIMIT = timedelta(hours=12)  # a reminder this late is dropped, not posted


class RemindersConfig(PluginConfig):
    """``[plugins.reminders]`` in the config file; rooms change them with ``!config``."""

    max_waiting: int = Field(
        20, ge=1, le=500, description="how many reminders a room may have waiting at once"
    )
    late_notice: bool = Field(
        True, description="say so when a reminder comes late because I was offline"
    )


class ReminderArg(Converter):
    """``R-3`` → that reminder, if it is in this room: an async converter answers for itself."""

    metavar = "R-number"

    async def convert(self, raw: str, ctx: Context[Any]) -> Reminder:
        number = ItemId("R").convert(raw, ctx)
        found = await ReminderStore(ctx.plugin.db).get(number)
        if found is None or found.room_id != ctx.room_id:
            raise CommandError(f"There's no reminder R-{number} here ({ctx.prefix}reminders).")
        return found


class RemindersPlugin(Plugin[RemindersConfig]):
    name = "reminders"
    description = "Reminders a room sets for itself."
    migrations = MIGRATIONS
    templates = ("reminder", "waiting")

    async def setup(self) -> None:
        self.store = ReminderStore(self.ctx.db)
        # Timers live in memory only: re-arm every future reminder from the table. Overdue
        # ones wait for caught_up(), so a cancel typed while the bot was down is read first.
        now = self.ctx.clock.now()
        for reminder in await self.store.waiting():
            if reminder.due_at > now:
                self._arm(reminder)

    async def caught_up(self) -> None:
        """Everything said while the bot was down has been read: post what came due then."""
        now = self.ctx.clock.now()
        for reminder in await self.store.waiting():
            if reminder.due_at <= now:
                self._arm(reminder)  # a past time runs at once

    def _arm(self, reminder: Reminder) -> None:
        self.ctx.jobs.at(
            f"due:{reminder.id}", reminder.due_at, functools.partial(self._due, reminder.id)
        )

    async def _due(self, reminder_id: int, job: JobContext[RemindersConfig]) -> None:
        """The job: its sends are keyed by this job and its due time, so a run repeated after a
        crash (or a retry after a failure) is not posted twice."""
        reminder = await self.store.get(reminder_id)
        if reminder is None or reminder.sent_at is not None:
            return  # cancelled, or already sent before a restart
        late = job.now - reminder.due_at
        config = await job.config(reminder.room_id)
        if late <= LATE_LIMIT and config.enabled:  # moderators may have switched it off since
            await job.send(
                reminder.room_id,
                job.render(
                    "reminder",
                    reminder=reminder,
                    late=late > timedelta(minutes=1) and config.late_notice,
                ),
                thread_root=reminder.thread_root,  # the thread it was set in, if any
                reply_to=reminder.source_event,
                on_behalf_of=reminder.author,  # may ping the room only if its author may
                notify=(reminder.author,),  # they asked for it: their client rings
            )
        await self.store.mark_sent(reminder.id, job.now)

    # -- commands ----------------------------------------------------------------------------
    @command(
        "remind",
        examples=("!remind friday 18:00 | Put the bins out", "!remind in 2 hours | Tea urn off"),
    )
    async def remind(self, ctx: Context[RemindersConfig], when_and_what: Lines) -> None:
        """Set a reminder for this room: when, then what, separated by |.

        The time is read in the room's time zone ("friday 18:00", "in 2 hours", "2 Jan 9am")
        and echoed back, so a misread time is caught at once. The reminder is posted here, as
        R-<number>, at that time."""
        if len(when_and_what) < 2:
            raise CommandError(
                f"Tell me when and what, split by |, for example: "
                f"{ctx.prefix}remind friday 18:00 | Put the bins out"
            )
        when, text = when_and_what[0], " ".join(when_and_what[1:])
        due = await resolve_when(when, ctx)
        waiting = await self.store.waiting(ctx.room_id)
        if len(waiting) >= ctx.config.max_waiting:
            raise CommandError(
                f"This room already has {len(waiting)} reminders waiting, the most it may "
                f"have. Cancel one with {ctx.prefix}remind cancel R-<number>."
            )
        reminder = await self.store.add(
            ctx.event.event_id, ctx.room_id, ctx.sender, text, due, ctx.event.thread_root
        )
        self._arm(reminder)
        zone = await ctx.timezone()
        # item= records the echo as the reminder's post: a cancel edits it (ctx.refresh).
        await ctx.reply(
            f"{reminder.label}: I'll remind this room on {format_when(due, zone, ctx.now)}: {text}",
            item=reminder.label,
        )

    @command("remind cancel", parent=remind, examples=("!remind cancel R-3",))
    async def cancel(
        self, ctx: Context[RemindersConfig], reminder: Annotated[Reminder, ReminderArg()]
    ) -> None:
        """Cancel a reminder (whoever set it, or a moderator)."""
        if reminder.author != ctx.sender and not await ctx.has_role(Role.MODERATOR):
            raise CommandError(f"Only whoever set {reminder.label} or a moderator can cancel it.")
        if reminder.sent_at is not None:
            raise CommandError(f"{reminder.label} has already been sent.")
        await self.store.delete(reminder.id)
        self.ctx.jobs.cancel(f"due:{reminder.id}")
        # The echo above the cancel must not keep promising a reminder that won't come.
        await ctx.refresh(reminder.label, f"{reminder.label} (cancelled): {reminder.text}")
        await ctx.reply(f"Cancelled {reminder.label}.")

    @command("reminders")
    async def waiting(self, ctx: Context[RemindersConfig]) -> None:
        """List the reminders waiting in this room."""
        zone = await ctx.timezone()
        rows = [
            (r.label, format_when(r.due_at, zone, ctx.now), r.text)
            for r in await self.store.waiting(ctx.room_id)
        ]
        await ctx.reply_template("waiting", rows=rows)

    # -- hooks other parts of civicbot call --------------------------------------------------
    async def digest_section(
        self, room_id: str, since: datetime, until: datetime
    ) -> DigestSection | None:
        sent = await self.store.sent_between(room_id, since, until)
        if not sent:
            return None
        return DigestSection("Reminders", f"{sent} reminder{'s' if sent != 1 else ''} went out.")

    async def export_user_data(self, user_id: str) -> dict[str, Any] | None:
        mine = await self.store.by_author(user_id)
        if not mine:
            return None
        return {
            "reminders_you_set": [
                {"id": r.label, "room": r.room_id, "text": r.text, "due": r.due_at.isoformat()}
                for r in mine
            ]
        }

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        removed = await self.store.forget(user_id)
        return ForgetReport(removed=removed, notes=[f"{removed} reminder(s) you set"])
