"""``!ping``: version, uptime and the room's enabled plugins."""

from __future__ import annotations

from civicbot.api import Context, Plugin, PluginConfig, command


def format_uptime(seconds: float) -> str:
    """``3d 4h``, ``2h 5m``, ``42s``: short enough for a phone screen."""
    seconds = int(seconds)
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


class PingPlugin(Plugin[PluginConfig]):
    name = "ping"
    description = "Checks that the bot is listening."
    templates = ("pong",)

    @command("ping")
    async def ping(self, ctx: Context[PluginConfig]) -> None:
        """Check that I'm listening; shows my version, uptime and this room's plugins."""
        enabled = await self.ctx.bot.enabled_plugins(ctx.room_id)
        await ctx.reply_template(
            "pong",
            version=self.ctx.bot.version,
            uptime=format_uptime(self.ctx.bot.uptime_seconds()),
            plugins=enabled,
        )
