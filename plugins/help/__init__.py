"""Lists what the bot can do in this room."""

from civicbot_plugins.help.plugin import HelpPlugin

PLUGIN = HelpPlugin
