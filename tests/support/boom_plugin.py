"""A plugin for tests: ``!boom`` raises, to prove one failing handler never stops the bot;
``!hold`` hangs, to prove one stuck room never holds back another."""

import asyncio
import os

from civicbot.core.commands import command
from civicbot.core.context import Context
from civicbot.core.plugin import Plugin, PluginConfig


class BoomPlugin(Plugin[PluginConfig]):
    name = "boom"
    description = "Fails on purpose (tests only)."

    @command("boom")
    async def boom(self, ctx: Context[PluginConfig]) -> None:
        """Raise an error on purpose."""
        raise RuntimeError("boom on purpose")

    @command("hold")
    async def hold(self, ctx: Context[PluginConfig]) -> None:
        """Hang for good if the file named by CIVICBOT_TEST_HOLD exists (a stuck handler, until
        the process is killed); otherwise answer at once."""
        path = os.environ.get("CIVICBOT_TEST_HOLD")
        if path and os.path.exists(path):  # noqa: ASYNC240 (a test plugin, once per command)
            await asyncio.Event().wait()
        await ctx.reply("Held and let go.")
