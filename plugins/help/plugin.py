"""``!help`` and ``!help <command>``: generated from every enabled plugin's commands."""

from __future__ import annotations

from typing import Any

from civicbot_plugins.help.prose import as_html, as_text

from civicbot.api import (
    CommandError,
    CommandInfo,
    Context,
    Plugin,
    PluginConfig,
    Rendered,
    Rest,
    command,
)


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
        by_plugin: dict[str, list[dict[str, Any]]] = {}
        for spec in allowed:
            by_plugin.setdefault(spec.plugin, []).append(_shown(spec, ctx.prefix, commands))
        await ctx.reply_template(
            "overview", groups=sorted(by_plugin.items()), hidden_count=len(commands) - len(allowed)
        )

    def _explain(
        self, ctx: Context[PluginConfig], topic: str, commands: list[CommandInfo]
    ) -> Rendered:
        wanted = " ".join(topic.lower().removeprefix(ctx.prefix).split())
        for spec in commands:
            if wanted == spec.name or wanted in spec.aliases:
                return self.ctx.render("command", c=_shown(spec, ctx.prefix, commands))
        family = [c for c in commands if c.name.split()[0] == wanted.split()[0]]
        if family:
            shown_family = [_shown(c, ctx.prefix, commands) for c in family]
            return self.ctx.render("family", commands=shown_family)
        raise CommandError(
            f"I don't have a command called {ctx.prefix}{wanted} in this room. "
            f"Type {ctx.prefix}help to see them all."
        )


def _shown(spec: CommandInfo, prefix: str, commands: list[CommandInfo]) -> dict[str, Any]:
    """What the templates show of a command: its docstring as readable text and as HTML."""
    words = {c.name.split()[0] for c in commands}
    return {
        "usage": spec.usage(prefix),
        "help": as_text(spec.help, prefix, words),
        "help_html": (as_html(spec.help, prefix, words) or [""])[0],
        "details": as_text(spec.details, prefix, words),
        "details_html": as_html(spec.details, prefix, words),
        "examples": spec.examples,
        "requires": str(spec.requires),
    }
