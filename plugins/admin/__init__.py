"""Moderators run their room from the chat: plugins, settings, roles, audit, rate limits."""
