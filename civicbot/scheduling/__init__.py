"""Scheduling: the one injectable clock, the timers, and plugins' jobs.

Internal: plugins import from :mod:`civicbot.api`, never from here.
"""
