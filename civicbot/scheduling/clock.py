"""Time, behind an interface the fast tests can wind forward.

The bot process runs on a :class:`SystemClock`. Tests that drive a real ``civicbot run`` move
its time from outside, as :mod:`civicbot.failpoints` crashes it: ``CIVICBOT_CLOCK_OFFSET_FILE``
names a file holding an offset in seconds, read at start and again on SIGUSR1 (the scheduler is
then woken, so a job due in the moved-to time runs at once). Production never sets it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

OFFSET_FILE_ENV = "CIVICBOT_CLOCK_OFFSET_FILE"
log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None:
        """Wait; a fake clock moves forward instead."""


class SystemClock:
    """The real time, plus an offset a test may set (see the module's docstring)."""

    def __init__(self, offset_file: Path | None = None):
        self.offset_file = offset_file
        self._offset = 0.0
        self.reload()

    @classmethod
    def from_environment(cls) -> SystemClock:
        name = os.environ.get(OFFSET_FILE_ENV, "")
        return cls(Path(name) if name else None)

    def reload(self) -> None:
        """Read the offset file again (a missing or empty one is no offset)."""
        if self.offset_file is None:
            return
        try:
            text = self.offset_file.read_text().strip()
        except FileNotFoundError:
            text = ""
        offset = float(text) if text else 0.0
        if offset != self._offset:
            self._offset = offset
            log.info("the clock is moved by %.3f s: it is now %s", offset, self.now())

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._offset)

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that only moves when a test says so."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        self.advance(timedelta(seconds=seconds))
        await asyncio.sleep(0)

    def advance(self, delta: timedelta) -> None:
        self._now += delta
        self._mono += delta.total_seconds()

    def set(self, when: datetime) -> None:
        self.advance(when - self._now)


def ms(when: datetime) -> int:
    """Milliseconds since the epoch, as Matrix timestamps are."""
    return int(when.timestamp() * 1000)
