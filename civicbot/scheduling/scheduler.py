"""Deadlines and repeating jobs, scoped per plugin.

Durable state lives in plugin tables: a plugin re-arms its deadlines in ``setup()``, so nothing
is lost when the process stops. apscheduler only holds timers in memory. A deadline already past
(the bot was down) fires at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from civicbot.scheduling.clock import Clock, FakeClock

log = logging.getLogger(__name__)
Job = Callable[[], Awaitable[None]]


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


class ApScheduler:
    """The production scheduler, over apscheduler's asyncio scheduler."""

    def __init__(self, clock: Clock, _inner: AsyncIOScheduler | None = None, prefix: str = ""):
        self._clock = clock
        self._inner = _inner or AsyncIOScheduler(
            job_defaults={"misfire_grace_time": None, "coalesce": True}
        )
        self._prefix = prefix

    def start(self) -> None:
        self._inner.start()

    def shutdown(self) -> None:
        if self._inner.running:
            self._inner.shutdown(wait=False)

    def _add(self, key: str, trigger: object, job: Job) -> None:
        full = self._prefix + key
        self._inner.add_job(
            _run_isolated, trigger, args=(full, job), id=full, replace_existing=True
        )

    def at(self, key: str, when: datetime, job: Job) -> None:
        when = max(when, self._clock.now() + timedelta(milliseconds=10))
        self._add(key, DateTrigger(run_date=when), job)

    def every(self, key: str, interval: timedelta, job: Job) -> None:
        self._add(key, IntervalTrigger(seconds=interval.total_seconds()), job)

    def cron(self, key: str, expression: str, timezone: str, job: Job) -> None:
        self._add(key, CronTrigger.from_crontab(expression, timezone=timezone), job)

    def cancel(self, key: str) -> None:
        job = self._inner.get_job(self._prefix + key)
        if job is not None:
            job.remove()

    def scoped(self, prefix: str) -> ApScheduler:
        return ApScheduler(self._clock, self._inner, self._prefix + prefix + ":")


class ManualScheduler:
    """For fast tests: jobs run when the test winds the :class:`FakeClock` with :meth:`advance`."""

    def __init__(
        self,
        clock: FakeClock,
        _jobs: dict[str, tuple[datetime, timedelta | None, Job]] | None = None,
        prefix: str = "",
    ):
        self.clock = clock
        self._jobs = _jobs if _jobs is not None else {}
        self._prefix = prefix

    def at(self, key: str, when: datetime, job: Job) -> None:
        self._jobs[self._prefix + key] = (when, None, job)

    def every(self, key: str, interval: timedelta, job: Job) -> None:
        self._jobs[self._prefix + key] = (self.clock.now() + interval, interval, job)

    def cron(self, key: str, expression: str, timezone: str, job: Job) -> None:
        trigger = CronTrigger.from_crontab(expression, timezone=timezone)
        first = trigger.get_next_fire_time(None, self.clock.now())
        self._jobs[self._prefix + key] = (first, None, self._recurring_cron(key, trigger, job))

    def _recurring_cron(self, key: str, trigger: CronTrigger, job: Job) -> Job:
        async def run() -> None:
            await job()
            nxt = trigger.get_next_fire_time(None, self.clock.now() + timedelta(seconds=1))
            self._jobs[self._prefix + key] = (nxt, None, run)

        return run

    def cancel(self, key: str) -> None:
        self._jobs.pop(self._prefix + key, None)

    def scoped(self, prefix: str) -> ManualScheduler:
        return ManualScheduler(self.clock, self._jobs, self._prefix + prefix + ":")

    def pending(self) -> list[str]:
        return sorted(self._jobs)

    async def advance(self, delta: timedelta = timedelta(0)) -> None:
        """Move the clock forward, running each job that comes due at its own time, in order
        (so a repeating job fires once per period and sees the time it was due)."""
        target = self.clock.now() + delta
        while True:
            due = sorted((when, key) for key, (when, _, _) in self._jobs.items() if when <= target)
            if not due:
                break
            when, key = due[0]
            if when > self.clock.now():
                self.clock.set(when)
            _, interval, job = self._jobs.pop(key)
            if interval is not None:
                self._jobs[key] = (when + interval, interval, job)
            await _run_isolated(key, job)
            await asyncio.sleep(0)
        self.clock.set(max(target, self.clock.now()))
