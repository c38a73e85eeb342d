"""Policy: who may do what (permissions, roles), how much (flood limits, pacing), and the settings
each room's moderators may change.

Internal: plugins import from :mod:`civicbot.api`, never from here.
"""
