"""``!mydata`` and ``!forget me``: every resident can see, and erase, what the bot holds on them.

Both go through the plugin hooks ``export_user_data`` and ``forget_user``
(:class:`civicbot.core.plugin.Plugin`), so every plugin, built-in or installed, answers for its own
tables. This plugin adds what the core itself keeps: the link to the person's direct chat.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import Field

from civicbot.api import (
    OPERATOR_ONLY,
    CommandError,
    Context,
    ForgetReport,
    Plugin,
    PluginConfig,
    Rest,
    TransportError,
    command,
    privacy_filter,
    private,
)

log = logging.getLogger(__name__)


class PrivacyConfig(PluginConfig):
    # People's rights over their data are not a room's to switch off.
    enabled: bool = Field(True, json_schema_extra={OPERATOR_ONLY: True})


def build_export(
    user_id: str, generated_at: str, results: list[Any], unconfirmed: list[str]
) -> dict[str, Any]:
    """The ``!mydata`` file: one section per plugin that holds something."""
    export: dict[str, Any] = {
        "about": "Everything civicbot stores about you, by plugin. Times are UTC.",
        "user_id": user_id,
        "generated_at": generated_at,
        "plugins": {name: data for name, data in results},
    }
    if unconfirmed:
        export["could_not_export"] = unconfirmed
    return export


class PrivacyPlugin(Plugin[PrivacyConfig]):
    name = "privacy"
    description = "See, or erase, what I store about you."
    templates = ("mydata", "forgotten", "forgotten_summary")

    async def _each_plugin(self, hook: str, user_id: str) -> tuple[list[Any], list[str]]:
        """Call ``hook(user_id)`` on every loaded plugin, enabled in any room or not; return
        the ``(name, result)`` pairs that are not None and the names of plugins that failed.

        A privacy request must never be confirmed as complete when it is not, so failures are
        reported, not skipped."""
        found = await self.ctx.bot.call_hook(hook, None, user_id)
        return found.results, found.failed

    # -- !mydata -------------------------------------------------------------------------------
    @command("mydata", aliases=("my data",))
    async def mydata(self, ctx: Context[PrivacyConfig]) -> None:
        """Get everything I store about you, as a file in a direct message."""
        results, missing = await self._each_plugin("export_user_data", ctx.sender)
        when = ctx.now.isoformat().replace("+00:00", "Z")
        export = build_export(ctx.sender, when, results, missing)
        data = json.dumps(export, indent=2, ensure_ascii=False, default=str).encode()
        filename = f"civicbot-my-data-{ctx.now:%Y-%m-%d}.json"
        direct = await ctx.is_direct()
        try:
            await ctx.dm(ctx.sender, self.ctx.render("mydata", plugins=results))
            await ctx.dm_file(ctx.sender, data, filename, "application/json")
        except TransportError as exc:
            log.warning("could not send %s their data: %s", private(ctx.sender), exc)
            raise CommandError(
                "I couldn't open a direct chat with you to send your data. Start one with me "
                f"and type {ctx.prefix}mydata there."
            ) from None
        if missing:
            log.warning("export for %s lacks %s", private(ctx.sender), ", ".join(missing))
        if not direct:
            await ctx.reply(
                f"I've sent you a direct message with {filename}: everything I store about you."
            )

    # -- !forget me ----------------------------------------------------------------------------
    @command("forget", hidden=True, open_text=True)
    async def forget(self, ctx: Context[PrivacyConfig], words: Rest | None = None) -> None:
        """How to have me forget you: `forget me`."""
        raise CommandError(
            f"To have me remove or anonymise everything I store about you, type "
            f"{ctx.prefix}forget me. I can only forget the person who asks."
        )

    @command("forget me", parent=forget)
    async def forget_me(self, ctx: Context[PrivacyConfig]) -> None:
        """Remove or anonymise everything I store about you, in every room.

        Totals stay (a poll's count does not change) but nothing says it was you. I confirm what
        was removed, privately."""
        user = ctx.sender
        # Asked first: forgetting drops the record that makes this room the person's DM.
        direct = await ctx.is_direct()
        results, unconfirmed = await self._each_plugin("forget_user", user)
        reports = [(n, r) for n, r in results if isinstance(r, ForgetReport)]
        # The flood guard's buckets stay: they live in memory only, are dropped when idle, and
        # clearing them would let anyone reset their rate limit by asking to be forgotten.
        # From now on this process writes a pseudonym wherever the id would appear in a log.
        # Not persisted: a list of forgotten ids would itself be a trace of them.
        privacy_filter.protect(user)
        removed = sum(r.removed for _, r in reports)
        anonymised = sum(r.anonymised for _, r in reports)
        log.info(
            "forgot %s: %d removed, %d anonymised, unconfirmed: %s",
            private(user),
            removed,
            anonymised,
            ", ".join(unconfirmed) or "none",
        )
        details = self.ctx.render(
            "forgotten",
            reports=[(n, r) for n, r in reports if r.removed or r.anonymised or r.notes],
            unconfirmed=unconfirmed,
        )
        if direct:
            await ctx.reply(details)
        else:
            try:
                sent_privately = bool(await ctx.dm(user, details))
            except TransportError as exc:
                log.warning("could not send %s the details: %s", private(user), exc)
                sent_privately = False
            summary = self.ctx.render(
                "forgotten_summary",
                removed=removed,
                anonymised=anonymised,
                unconfirmed=unconfirmed,
                sent_privately=sent_privately,
            )
            await ctx.reply(summary)
        # Sending the details may have recorded the direct chat again: drop it last.
        await self._forget_direct_chat(user)
        await self.ctx.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def _forget_direct_chat(self, user_id: str) -> int:
        return await self.ctx.forget_direct_room(user_id)

    # -- hooks ---------------------------------------------------------------------------------
    async def export_user_data(self, user_id: str) -> dict[str, Any] | None:
        room = await self.ctx.known_direct_room(user_id)
        return {"direct_chat_room": room} if room else None

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        # Counted now, dropped by forget_me once the details have gone out: dropped here, the
        # details would open a new direct chat instead of arriving in the one the person knows.
        known = await self.ctx.known_direct_room(user_id)
        return ForgetReport(removed=1 if known else 0)
