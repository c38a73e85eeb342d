"""``!digest`` (``preview``, ``now``, ``subscribe``, ``unsubscribe``, ``space``) and the weekly
digest itself: counted by observers, posted by :mod:`lifecycle`, built by :mod:`compose`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from civicbot_plugins.digest.compose import NAMES, Composer, DigestTemplates, TemplateProblem
from civicbot_plugins.digest.config import DigestConfig
from civicbot_plugins.digest.counts import WeekCounter
from civicbot_plugins.digest.lifecycle import DigestRunner
from civicbot_plugins.digest.migrations import MIGRATIONS
from civicbot_plugins.digest.service import next_slot, through
from civicbot_plugins.digest.spaces import space_rooms, spaces_of
from civicbot_plugins.digest.store import DigestStore

from civicbot.api import (
    CommandError,
    Context,
    Event,
    EventKind,
    ForgetReport,
    JobContext,
    Message,
    Plugin,
    Rendered,
    Role,
    command,
    describe_delta,
    format_when,
    observe,
)

Ctx = Context[DigestConfig]
FLUSH_EVERY = timedelta(seconds=5)
AGAIN_AFTER = timedelta(hours=1)  # a second !digest now sooner repeats the same week
SUBCOMMANDS = ("preview", "now", "subscribe", "unsubscribe", "space")


class DigestPlugin(Plugin[DigestConfig]):
    name = "digest"
    description = "One weekly summary per room, personal digests by DM, a space-wide digest."
    migrations = MIGRATIONS
    templates = NAMES

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        self.store = DigestStore(ctx.db)
        self.counter = WeekCounter(self.store, ctx.keyed_hash, ctx.rooms.is_private)
        self.looks = DigestTemplates(ctx.templates, ctx.default_config.template_dir)
        self.composer = Composer(ctx, self.store, self.looks)
        self.runner = DigestRunner(ctx, self.store, self.counter, self.composer)
        self._flush_armed = False  # counts wait in memory; a flush is due within FLUSH_EVERY

    async def setup(self) -> None:
        if self.looks.problem:
            self.log.error("the digest templates are broken: %s", self.looks.problem)
        self.runner.register()

    async def caught_up(self) -> None:
        """Digests that fell due while the bot was down go out now, once, marked late."""
        now = self.ctx.clock.now()
        await self.runner.start(now)
        await self.runner.adopt_unsent()
        # Armed first: if this first look fails (the homeserver is away), the next one runs.
        every = timedelta(seconds=self.ctx.default_config.check_every_seconds)
        self.ctx.jobs.every("tick", every, self._tick)
        await self.runner.tick(now)

    async def teardown(self) -> None:
        try:
            await self.counter.flush()
        except Exception:
            self.log.exception("the last digest counts could not be written")

    async def _flush(self, job: JobContext[DigestConfig]) -> None:
        self._flush_armed = False
        await self.counter.flush()

    async def _tick(self, job: JobContext[DigestConfig]) -> None:
        await self.runner.tick(job.now)

    # -- counting (batch observers: cheap, never send, never mark an event handled) ----------
    @observe(EventKind.MESSAGE, EventKind.MEMBERSHIP)
    def count(self, events: Sequence[Event]) -> None:
        now = int(self.ctx.clock.now().timestamp())
        counter = self.counter
        for event in events:
            at = event.ts // 1000 if event.ts else now
            if event.kind is EventKind.MESSAGE:
                counter.message(event.room_id, at, event.thread_root)
            elif event.membership == "join" and event.state_key and event.state_key == event.sender:
                counter.joined(event.room_id, event.sender, at)
        if not self._flush_armed:
            # Written a few seconds later, in one go: a flush armed only when there is something
            # to write (every 5 s whatever happened was 120,000 runs a week for nothing).
            self._flush_armed = True
            self.ctx.jobs.at("flush", self.ctx.clock.now() + FLUSH_EVERY, self._flush)

    # -- commands ------------------------------------------------------------------------------
    @command("digest", examples=("!digest", "!digest preview", "!digest subscribe"))
    async def digest(self, ctx: Ctx, *words: str) -> None:
        """When this room's weekly digest comes, and what you can do with it.

        Moderators choose the day and time with `!config digest.day sunday` and
        `!config digest.time 18:00` (in the room's time zone)."""
        if words:
            raise CommandError(
                f"I don't know {ctx.prefix}digest {words[0]}. Try "
                + ", ".join(f"{ctx.prefix}digest {w}" for w in SUBCOMMANDS)
                + "."
            )
        zone = await ctx.timezone()
        when = next_slot(ctx.config.weekday, *ctx.config.clock, zone, ctx.now)
        state = "on" if ctx.config.enabled else "off"
        await ctx.reply(
            f"This room's weekly digest ({state}) comes next on "
            f"{format_when(when, zone, ctx.now)}. "
            f"{ctx.prefix}digest preview shows it as it would be now; {ctx.prefix}digest "
            f"subscribe sends you your own open items by direct message every week."
        )

    @command("digest preview", parent=digest, examples=("!digest preview",))
    async def preview(self, ctx: Ctx) -> None:
        """Show this room's digest as it would be posted now (to you, in a thread); in a
        direct message, your own personal digest."""
        if await ctx.is_direct():
            await self._preview_personal(ctx)
            return
        await self.counter.flush()
        rendered = await self._compose(ctx, preview=True)
        if rendered is not None:
            root = ctx.event.thread_root or ctx.event.event_id
            text, html = rendered.text, rendered.html
            await ctx.send_message(
                ctx.room_id,
                Message(text, html, reply_to=ctx.event.event_id, thread_root=root),
            )

    async def _preview_personal(self, ctx: Ctx) -> None:
        try:
            rendered = await self.composer.personal(ctx.sender, ctx.now, await ctx.timezone())
        except TemplateProblem as exc:
            self.log.error("a personal digest preview was not made: %s", exc)
            raise CommandError(
                "The personal digest template is broken, so I can't show it. The bot's "
                "operator can fix it (plugins.digest.template_dir)."
            ) from None
        if rendered is None:
            await ctx.reply(
                "Your personal digest would be empty now: nothing of yours is open in your "
                f"rooms. To preview a room's digest, type {ctx.prefix}digest preview there."
            )
            return
        await ctx.reply(rendered)

    @command("digest now", parent=digest, requires=Role.MODERATOR, examples=("!digest now",))
    async def now(self, ctx: Ctx) -> None:
        """Post this room's digest of the last seven days now (the weekly one still comes)."""
        posted = await self.store.get_state(f"now:{ctx.room_id}")
        if posted is not None and ctx.now.timestamp() - posted < AGAIN_AFTER.total_seconds():
            ago = describe_delta(datetime.fromtimestamp(posted, UTC) - ctx.now)
            raise CommandError(
                f"I posted this room's digest {'just now' if ago == 'now' else ago}, so I "
                "haven't posted it again. "
                f"{ctx.prefix}digest preview shows it as it would be now."
            )
        await self.counter.flush()
        rendered = await self._compose(ctx, preview=False)
        if rendered is None:
            await ctx.reply("Nothing happened here in the last seven days, so there's no digest.")
            return
        await ctx.reply(rendered, thread=False)
        await self.store.set_state(f"now:{ctx.room_id}", int(ctx.now.timestamp()))

    async def _compose(self, ctx: Ctx, *, preview: bool) -> Rendered | None:
        try:
            return await self.composer.room(ctx.room_id, through(ctx.now), preview=preview)
        except TemplateProblem as exc:
            self.log.error("the digest for %s was not made: %s", ctx.room_id, exc)
            raise CommandError(
                f"The digest template is broken, so I posted nothing: {exc}. The bot's "
                "operator can fix it (plugins.digest.template_dir)."
            ) from None

    @command("digest subscribe", parent=digest, examples=("!digest subscribe",))
    async def subscribe(self, ctx: Ctx) -> None:
        """Get your own digest by direct message each week: your open items in all your rooms."""
        config, zone = self.ctx.default_config, self.ctx.default_zone
        when = format_when(next_slot(config.weekday, *config.clock, zone, ctx.now), zone, ctx.now)
        if not await self.store.subscribe(ctx.sender, int(ctx.now.timestamp())):
            await ctx.reply(f"You're already subscribed; the next one comes {when}.")
            return
        await ctx.reply(
            f"Subscribed: I'll send you your own digest by direct message every week, next "
            f"{when}. {ctx.prefix}digest unsubscribe stops it."
        )

    @command("digest unsubscribe", parent=digest, examples=("!digest unsubscribe",))
    async def unsubscribe(self, ctx: Ctx) -> None:
        """Stop your personal digest."""
        if await self.store.unsubscribe(ctx.sender):
            await ctx.reply("Unsubscribed: no more personal digests.")
        else:
            await ctx.reply(f"You weren't subscribed ({ctx.prefix}digest subscribe to start).")

    @command("digest space", parent=digest, requires=Role.MODERATOR, examples=("!digest space",))
    async def space(self, ctx: Ctx) -> None:
        """Post one digest of every public room of this room's space that I'm in."""
        spaces = await spaces_of(self.ctx.rooms, ctx.room_id)
        if not spaces:
            raise CommandError(
                "This room isn't in a space I'm in. Invite me to the space (and its rooms), "
                f"then try {ctx.prefix}digest space again."
            )
        await self.counter.flush()
        found = await space_rooms(self.ctx.rooms, spaces[0], ctx.room_id)
        try:
            rendered = await self.composer.space(
                found.name, found.rooms, found.left_out, through(ctx.now), await ctx.timezone()
            )
        except TemplateProblem as exc:
            self.log.error("the space digest for %s was not made: %s", found.space_id, exc)
            raise CommandError(
                f"The digest template is broken, so I posted nothing: {exc}."
            ) from None
        await ctx.reply(rendered, thread=False)

    # -- hooks ---------------------------------------------------------------------------------
    async def export_user_data(self, user_id: str) -> dict[str, Any] | None:
        if not await self.store.is_subscribed(user_id):
            weeks = await self.store.personal_weeks(user_id)
            return {"personal_digests_sent": weeks} if weeks else None
        return {
            "subscribed_to_personal_digest": True,
            "personal_digests_sent": await self.store.personal_weeks(user_id),
        }

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        removed = await self.store.forget_person(user_id)
        removed += await self.store.forget_member(self.counter.forget(user_id))
        if not removed:
            return None
        return ForgetReport(removed=removed, anonymised=0, notes=[])
