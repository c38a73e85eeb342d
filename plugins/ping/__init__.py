"""Is the bot alive? Version, uptime and this room's plugins."""
