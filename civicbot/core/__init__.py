"""The core that routes events: normalised events in, commands and hooks dispatched, replies out.

Internal: plugins import from :mod:`civicbot.api`, never from here.
"""
