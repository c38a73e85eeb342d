"""Moderators run their room from the chat: plugins, settings, roles, audit, rate limits."""

from civicbot_plugins.admin.plugin import AdminPlugin

PLUGIN = AdminPlugin
