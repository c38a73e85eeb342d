"""The commands of the public pages. The pages themselves are the engine's
(:mod:`civicbot.web`); this plugin only tells people where they are, through ``ctx.public``.

- ``!web``: the room's public address, or how its moderators publish it.
- ``!calendar`` (``reset``): a person's private calendar feed of the meetings they are going
  to, always by direct message (the address is a secret: anyone holding it sees the feed).
- ``!noticeboard``: the one-page A4 noticeboard as a PDF, by DM to the moderator who asked.
"""

from __future__ import annotations

import logging
from typing import Any

from civicbot.api import (
    CommandError,
    Context,
    ForgetReport,
    Plugin,
    PluginConfig,
    PublicError,
    PublicPages,
    Role,
    TransportError,
    command,
    private,
)

log = logging.getLogger(__name__)

Ctx = Context[PluginConfig]
OFF = (
    "The public pages are switched off on this bot: its operator turns them on with "
    "[web] listen and public_url in the config file."
)


class PublicPlugin(Plugin[PluginConfig]):
    name = "public"
    description = "The room's public web page, calendar feeds and printable noticeboard."

    def _pages(self) -> PublicPages:
        pages = self.ctx.public
        if pages is None or not pages.serving:
            raise CommandError(OFF)
        return pages

    @command("web", examples=("!web",))
    async def web(self, ctx: Ctx) -> None:
        """Where this room's public page is: meetings, decisions, consultations, offers."""
        pages = self._pages()
        url = await pages.room_url(ctx.room_id)
        if url is not None:
            await ctx.reply(
                f"This room's public page: {url}\nIts meetings as a calendar feed: "
                f"{url}/calendar.ics\nThe printable noticeboard: {url}/noticeboard"
            )
            return
        if await ctx.is_direct():
            raise CommandError("A direct chat never has a public page. Ask in your room.")
        await ctx.reply(
            "This room has no public page. Its moderators can publish one (the next meetings, "
            "decisions, consultations with the council's responses, open offers and needs; never "
            f"anything private) with {ctx.prefix}config web.public true; "
            f"{ctx.prefix}config web.names false leaves everyone's names off it."
        )

    @command("calendar", examples=("!calendar", "!calendar reset"))
    async def calendar(self, ctx: Ctx) -> None:
        """Get a private calendar feed of the meetings you said you are going to, by DM."""
        await self._send_calendar(ctx, reset=False)

    @command("calendar reset", parent=calendar)
    async def calendar_reset(self, ctx: Ctx) -> None:
        """Make a new calendar feed address; the old one stops working at once."""
        await self._send_calendar(ctx, reset=True)

    async def _send_calendar(self, ctx: Ctx, reset: bool) -> None:
        pages = self._pages()
        url = await pages.calendar_url(ctx.sender, reset=reset)
        webcal = "webcal://" + url.split("://", 1)[1]
        first = "Your new calendar feed; the old address no longer works." if reset else (
            "Your calendar feed: the meetings you said you're going to (!rsvp M-3 going), in "
            "every room, kept up to date."
        )  # fmt: skip
        text = (
            f"{first}\nSubscribe in your calendar app: {webcal}\n(or add it by URL: {url})\n"
            f"Keep it to yourself: anyone with the address sees the feed. "
            f"{ctx.prefix}calendar reset makes a new one."
        )
        try:
            await ctx.dm(ctx.sender, text)
        except TransportError as exc:
            log.warning("could not send %s their calendar: %s", private(ctx.sender), exc)
            raise CommandError(
                "I couldn't open a direct chat with you. Start one with me and type "
                f"{ctx.prefix}calendar there."
            ) from None
        if not await ctx.is_direct():
            await ctx.reply("I've sent you a direct message with your calendar feed.")

    @command("noticeboard", requires=Role.MODERATOR, examples=("!noticeboard",))
    async def noticeboard(self, ctx: Ctx) -> None:
        """Get this room's noticeboard as a one-page A4 PDF to print, by direct message."""
        pages = self._pages()
        try:
            pdf = await pages.noticeboard_pdf(ctx.room_id)
        except PublicError as exc:
            extra = ""
            if await pages.room_url(ctx.room_id) is None:
                extra = f" Publish the room first with {ctx.prefix}config web.public true."
            raise CommandError(f"{exc}{extra}") from None
        try:
            await ctx.dm(ctx.sender, "This room's noticeboard, ready to print on A4:")
            await ctx.dm_file(ctx.sender, pdf, "noticeboard.pdf", "application/pdf")
        except TransportError as exc:
            log.warning("could not send %s the noticeboard: %s", private(ctx.sender), exc)
            raise CommandError(
                "I couldn't open a direct chat with you. Start one with me, then ask again."
            ) from None
        if not await ctx.is_direct():
            await ctx.reply("I've sent you the noticeboard (PDF) by direct message.")

    async def export_user_data(self, user_id: str) -> dict[str, Any] | None:
        return None if self.ctx.public is None else await self.ctx.public.export(user_id)

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        if self.ctx.public is None:
            return None
        removed = await self.ctx.public.forget(user_id)
        return ForgetReport(removed=removed, anonymised=0) if removed else None
