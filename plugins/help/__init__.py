"""Lists what the bot can do in this room."""
