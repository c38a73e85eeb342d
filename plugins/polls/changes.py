"""Changing a posted poll: ``!poll edit`` and ``!poll cancel``, as Element users will see them.

**Edit** (only before anyone has voted) replaces the text announcement (which bridges and plain
clients see) in place with ``m.replace``. The native poll cannot be edited the same way: Element's
poll tile reads a poll start once and never re-reads an ``m.replace`` of it (element-web#26516),
so residents who had it open would keep voting with the old answers. The edited poll is therefore
posted as a new native poll, and the old one is ended with a line saying it was changed and
linking to the new one (its count is empty: nobody had voted). A vote that still reaches the old
poll counts for nothing, and the edited answers get new ids (``e1-1``, ``e1-2``…), so no stale
answer id is ever counted for a different option. If the edit makes
the poll secret or ranked (typed votes only), its native poll is removed; if it makes a
typed-only poll an ordinary one, a native poll is posted.

**Cancel** redacts the native poll instead of ending it: an end event makes Element show the
final counts, which would publish the results the cancel is meant to withhold. Element shows
"Message deleted" there; the announcement is replaced by a line saying the poll was cancelled.

Every send is keyed by the command's event, so a replay after a crash repeats them harmlessly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from civicbot_plugins.polls import render
from civicbot_plugins.polls.lifecycle import PollRunner
from civicbot_plugins.polls.models import Poll
from civicbot_plugins.polls.store import PollStore

from civicbot.api import (
    format_when,
    matrix_to,
    notice_edit,
    restrict_mentions,
)

if TYPE_CHECKING:
    from civicbot_plugins.polls.config import PollsConfig

    from civicbot.api import Context, Outgoing, PluginContext


class PollChanges:
    """Sends the events that show an edited or cancelled poll in its room."""

    def __init__(self, ctx: PluginContext[PollsConfig], store: PollStore, runner: PollRunner):
        self.ctx = ctx
        self.store = store
        self.runner = runner

    def _outgoing(self, ctx: Context[PollsConfig], poll: Poll, step: str) -> Outgoing:
        """Sends keyed by the command's event and the step: a replay repeats each one's
        transaction id, whichever steps the poll's state now leaves to do."""
        return self.ctx.outgoing(f"change:{poll.id}", ctx.event.event_id, step)

    async def _replace_text(
        self, ctx: Context[PollsConfig], poll: Poll, template: str, values: dict[str, Any]
    ) -> None:
        if not poll.text_event_id:
            return
        rendered = self.ctx.templates.render(template, **values)
        # Nobody may make the bot ping the room by editing a poll, whatever their power: the
        # replacement content (m.new_content) is limited here, the message itself when sent.
        text, html, _, _ = restrict_mentions(rendered.text, rendered.html, (), False, False)
        message = notice_edit(poll.text_event_id, text, html)
        await self._outgoing(ctx, poll, "text").message(poll.room_id, message, may_ping_room=False)

    async def show_edit(self, ctx: Context[PollsConfig], poll: Poll) -> None:
        """``poll`` as edited: replace the announcement, then the native poll (or add or remove
        it when the edit changed whether it has one)."""
        zone = await self.ctx.timezone(poll.room_id)
        values = render.announce_values(poll, ctx.now, ctx.prefix, zone, self.ctx.rooms.bot_user_id)
        values["edited"] = True
        await self._replace_text(ctx, poll, "announce", values)
        start_id = poll.start_event_id
        native = render.has_native_poll(poll)
        out = self._outgoing(ctx, poll, "native")
        if start_id and native:
            # Element reads a poll start once and never its edits (element-web#26516): anyone
            # who had it open would keep voting with the old answers. So the changed poll is a
            # new one, and the old one ends saying where the new one is.
            old = start_id
            start_id = await out.event(poll.room_id, render.START_TYPE, render.start_content(poll))
            link = matrix_to(poll.room_id, start_id)
            await out.event(
                poll.room_id, render.END_TYPE, render.superseded_content(old, poll.label, link)
            )
        elif start_id:
            await out.redact(poll.room_id, start_id, f"{poll.label} now takes typed votes only")
            start_id = None
        elif native:
            start_id = await out.event(poll.room_id, render.START_TYPE, render.start_content(poll))
        if start_id != poll.start_event_id:
            self.runner.drop(poll)
            await self.store.set_start_event(poll.id, start_id)
            poll.start_event_id = start_id
        self.runner.track(poll)
        self.runner.arm(poll.id, poll.closes_at)

    async def show_cancel(self, ctx: Context[PollsConfig], poll: Poll) -> None:
        """``poll`` as cancelled: the announcement says so and the native poll is removed."""
        self.runner.drop(poll)
        zone = await self.ctx.timezone(poll.room_id)
        when = format_when(poll.closed_at or ctx.now, zone, ctx.now)
        values = {"poll": poll, "label": poll.label, "when": when}
        await self._replace_text(ctx, poll, "cancelled", values)
        if poll.start_event_id:
            await ctx.out.redact(poll.room_id, poll.start_event_id, f"{poll.label} was cancelled")
