"""Polls, proposals and ranked-choice decisions, native to Matrix and usable from any client."""
