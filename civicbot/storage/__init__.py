"""Storage: the one SQLite database with per-plugin ownership, the core's own tables, and the
installation secret kept beside (never in) the database.

Internal: plugins import from :mod:`civicbot.api`, never from here.
"""
