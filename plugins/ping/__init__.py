"""Is the bot alive? Version, uptime and this room's plugins."""

from civicbot_plugins.ping.plugin import PingPlugin

PLUGIN = PingPlugin
