"""Polls, proposals and ranked-choice decisions, native to Matrix and usable from any client."""

from civicbot_plugins.polls.plugin import PollsPlugin

PLUGIN = PollsPlugin
