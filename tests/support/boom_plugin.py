"""A plugin for tests: its command raises, to prove one failing handler never stops the bot."""

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
