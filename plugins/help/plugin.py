"""``!help`` and ``!help <command>``: generated from every enabled plugin's commands."""

from __future__ import annotations

from civicbot.botinfo import CommandInfo
from civicbot.commands import CommandError, Rest, command
from civicbot.context import Context
from civicbot.plugin import Plugin, PluginConfig
from civicbot.templates import Rendered


class HelpPlugin(Plugin[PluginConfig]):
    name = "help"
    description = "Lists the commands available in this room."
    templates = ("overview", "command", "family")

    @command("help", aliases=("commands",))
    async def help(self, ctx: Context[PluginConfig], topic: Rest | None = None) -> None:
        """Show what I can do here, or explain one command.

        Type the command after help, for example `help poll` or `help poll close`."""
        enabled = set(await self.ctx.bot.enabled_plugins(ctx.room_id))
        commands = [c for c in self.ctx.bot.commands() if c.plugin in enabled and not c.hidden]
        allowed = [c for c in commands if await ctx.has_role(c.requires)]
        if topic:
            await ctx.reply(self._explain(ctx, topic, commands))
            return
        by_plugin: dict[str, list[CommandInfo]] = {}
        for spec in allowed:
            by_plugin.setdefault(spec.plugin, []).append(spec)
        await ctx.reply_template(
            "overview", groups=sorted(by_plugin.items()), hidden_count=len(commands) - len(allowed)
        )

    def _explain(
        self, ctx: Context[PluginConfig], topic: str, commands: list[CommandInfo]
    ) -> Rendered:
        wanted = " ".join(topic.lower().removeprefix(ctx.prefix).split())
        for spec in commands:
            if wanted == spec.name or wanted in spec.aliases:
                return self.ctx.render("command", c=spec)
        family = [c for c in commands if c.name.split()[0] == wanted.split()[0]]
        if family:
            return self.ctx.render("family", commands=family)
        raise CommandError(
            f"I don't have a command called {ctx.prefix}{wanted} in this room. "
            f"Type {ctx.prefix}help to see them all."
        )
