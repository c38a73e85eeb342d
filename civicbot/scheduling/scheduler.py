"""Deadlines and repeating jobs, scoped per plugin, on the bot's one :class:`Clock`.

Durable state lives in plugin tables: a plugin re-arms its deadlines in ``setup()``, so nothing
is lost when the process stops. The scheduler only holds timers in memory. A deadline already
past (the bot was down) fires at once.

One table of due times serves production and the fast tests alike, and every due time is read
from the same clock as everything else the bot does: :class:`ClockScheduler` runs a loop that
sleeps until the next due time and wakes early when a job is armed or the clock is moved
(:meth:`ClockScheduler.wake`); :class:`ManualScheduler` runs the same table when a test winds
its :class:`FakeClock`. Crontab schedules are computed by apscheduler's ``CronTrigger``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from apscheduler.triggers.cron import CronTrigger

from civicbot.scheduling.clock import Clock, FakeClock

log = logging.getLogger(__name__)
Job = Callable[[], Awaitable[None]]
# The loop looks at the clock at least this often, whatever is due: the wall clock may jump
# (a host suspended, or NTP) while a sleep counts on.
LONGEST_SLEEP_S = 60.0


class Scheduler(Protocol):
    def at(self, key: str, when: datetime, job: Job) -> None:
        """Run ``job`` once at ``when`` (at once if already past); replaces a job of that key."""

    def every(self, key: str, interval: timedelta, job: Job) -> None: ...

    def cron(self, key: str, expression: str, timezone: str, job: Job) -> None:
        """Run on a crontab schedule (``"0 9 * * mon"``) in an IANA time zone."""

    def cancel(self, key: str) -> None: ...

    def scoped(self, prefix: str) -> Scheduler: ...


async def _run_isolated(key: str, job: Job) -> None:
    try:
        await job()
    except Exception:
        log.exception("scheduled job %s failed", key)


@dataclass
class _Table:
    """The jobs every scope of one scheduler shares: key → (due, interval, job)."""

    jobs: dict[str, tuple[datetime, timedelta | None, Job]] = field(default_factory=dict)
    changed: asyncio.Event | None = None

    def touch(self) -> None:
        if self.changed is not None:
            self.changed.set()


class ClockScheduler:
    """The scheduler of the bot process: each job runs (as a task of its own, so a slow one
    delays no other) when the clock reaches its due time."""

    def __init__(self, clock: Clock, _table: _Table | None = None, prefix: str = ""):
        self.clock = clock
        self._table = _table if _table is not None else _Table()
        self._prefix = prefix
        self._loop: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    # -- arming (shared by every scheduler) -----------------------------------------------------
    def at(self, key: str, when: datetime, job: Job) -> None:
        self._set(key, when, None, job)

    def every(self, key: str, interval: timedelta, job: Job) -> None:
        self._set(key, self.clock.now() + interval, interval, job)

    def cron(self, key: str, expression: str, timezone: str, job: Job) -> None:
        trigger = CronTrigger.from_crontab(expression, timezone=timezone)
        first = trigger.get_next_fire_time(None, self.clock.now())
        assert first is not None  # a crontab always has a next time
        self._set(key, first, None, self._recurring_cron(key, trigger, job))

    def _recurring_cron(self, key: str, trigger: CronTrigger, job: Job) -> Job:
        async def run() -> None:
            try:
                await job()
            finally:
                nxt = trigger.get_next_fire_time(None, self.clock.now() + timedelta(seconds=1))
                assert nxt is not None
                self._set(key, nxt, None, run)

        return run

    def _set(self, key: str, when: datetime, interval: timedelta | None, job: Job) -> None:
        self._table.jobs[self._prefix + key] = (when, interval, job)
        self._table.touch()

    def cancel(self, key: str) -> None:
        self._table.jobs.pop(self._prefix + key, None)

    def scoped(self, prefix: str) -> ClockScheduler:
        return type(self)(self.clock, self._table, self._prefix + prefix + ":")

    def pending(self) -> list[str]:
        return sorted(self._table.jobs)

    def _take_due(self, until: datetime) -> tuple[datetime, str, Job] | None:
        """The earliest job due at or before ``until``, out of the table (a repeating one is
        re-armed one interval on from when it was due)."""
        due = [(when, key) for key, (when, _, _) in self._table.jobs.items() if when <= until]
        if not due:
            return None
        when, key = min(due)
        _, interval, job = self._table.jobs.pop(key)
        if interval is not None:
            self._table.jobs[key] = (when + interval, interval, job)
        return when, key, job

    def _next_due(self) -> datetime | None:
        return min((when for when, _, _ in self._table.jobs.values()), default=None)

    # -- running (the bot process) ---------------------------------------------------------------
    def start(self) -> None:
        self._table.changed = asyncio.Event()
        self._loop = asyncio.create_task(self._run_forever(self._table.changed))

    def wake(self) -> None:
        """Look at the clock again now: it was moved (a test's offset), or a job was armed."""
        self._table.touch()

    def shutdown(self) -> None:
        """Stop starting jobs; a run still going finishes on its own."""
        if self._loop is not None:
            self._loop.cancel()
            self._loop = None
        self._table.changed = None

    async def _run_forever(self, changed: asyncio.Event) -> None:
        while True:
            changed.clear()
            while (found := self._take_due(self.clock.now())) is not None:
                _, key, job = found
                task = asyncio.create_task(_run_isolated(key, job))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            nxt = self._next_due()
            wait = LONGEST_SLEEP_S
            if nxt is not None:
                wait = min(wait, max(0.0, (nxt - self.clock.now()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)


class ManualScheduler(ClockScheduler):
    """For fast tests: jobs run when the test winds the :class:`FakeClock` with :meth:`advance`,
    one at a time and in order, each at its own due time."""

    def __init__(self, clock: FakeClock, _table: _Table | None = None, prefix: str = ""):
        super().__init__(clock, _table, prefix)
        self.fake_clock = clock

    async def advance(self, delta: timedelta = timedelta(0)) -> None:
        """Move the clock forward, running each job that comes due at its own time, in order
        (so a repeating job fires once per period and sees the time it was due)."""
        target = self.clock.now() + delta
        while (found := self._take_due(target)) is not None:
            when, key, job = found
            if when > self.clock.now():
                self.fake_clock.set(when)
            await _run_isolated(key, job)
            await asyncio.sleep(0)
        self.fake_clock.set(max(target, self.clock.now()))
