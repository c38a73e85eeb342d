"""One-line logs to stdout, with a filter that keeps private people's ids out of them.

Plugins that hold anonymous or de-identified data call :func:`private` on a user id before it
can reach a log line, or :meth:`PrivacyFilter.protect` for people who asked for privacy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_USER_ID = re.compile(r"@[a-z0-9._=\-/+]+:[a-zA-Z0-9.\-]+(?::\d+)?")


class Private:
    """A user id that must never be printed: its ``str`` is a stable pseudonym."""

    __slots__ = ("_id",)

    def __init__(self, user_id: str):
        self._id = user_id

    def __str__(self) -> str:
        return pseudonym(self._id)

    __repr__ = __str__


# Keyed per process: without the key nobody can hash a list of room members to undo a pseudonym.
_PSEUDONYM_KEY = os.urandom(16)


def pseudonym(user_id: str) -> str:
    """A short label for a person, the same throughout one run of the bot and not reversible
    (a keyed hash whose key never leaves the process)."""
    digest = hashlib.blake2s(user_id.encode(), digest_size=6, key=_PSEUDONYM_KEY).hexdigest()
    return f"<private:{digest}>"


def private(user_id: str) -> Private:
    """Wrap a user id for logging: ``log.info("vote from %s", private(sender))``."""
    return Private(user_id)


class PrivacyFilter(logging.Filter):
    """Replaces the ids of people who asked for privacy wherever they appear in a record."""

    def __init__(self) -> None:
        super().__init__()
        self._protected: set[str] = set()

    def protect(self, user_id: str) -> None:
        self._protected.add(user_id)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._protected:
            return True
        message = record.getMessage()
        if "@" in message:
            message = _USER_ID.sub(
                lambda m: pseudonym(m.group()) if m.group() in self._protected else m.group(),
                message,
            )
        record.msg, record.args = message, None
        return True


privacy_filter = PrivacyFilter()


def setup_logging(level: str = "INFO") -> None:
    """Readable one-line logs on stdout; quiets the chattier libraries."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    handler.addFilter(privacy_filter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("nio", "apscheduler", "aiosqlite", "peewee"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
