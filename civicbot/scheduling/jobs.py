"""Scheduled work as first-class citizens of a plugin (after python-telegram-bot's job queue).

    self.ctx.jobs.at(f"remind:{meeting.id}", meeting.remind_at, self.remind)

    async def remind(self, job: JobContext[MeetingsConfig]) -> None:
        await job.send(room_id, "Starting in an hour!")

A job gets a :class:`~civicbot.core.context.JobContext`: sending, templates, per-room config and the
time it was due. Its sends take transaction ids derived from the plugin, the job's key and its
due time, so two runs of one key (two reminders) both arrive, and a run repeated after a crash
or a retry is dropped by the homeserver instead of posted twice.

A job that raises is logged with its traceback and **retried** with the same due time (so the
sends that already went out are not repeated) after 30 s, 2 and 10 minutes; after the last try
it is logged as given up and the bot carries on. Jobs are scoped to their plugin: the core
cancels them all at teardown and when loading fails.

Durable state stays in the plugin's own tables: the scheduler holds timers in memory only, so a
plugin re-arms its jobs in ``setup()`` and acts on overdue work in ``caught_up()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from apscheduler.triggers.cron import CronTrigger

from civicbot.scheduling.clock import Clock
from civicbot.scheduling.scheduler import Scheduler

log = logging.getLogger(__name__)

# What a job is handed: a JobContext (civicbot.core.context), which builds on this module.
C = TypeVar("C")
_RETRY = "#retry"
RETRY_DELAYS = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10))


class Jobs(Generic[C]):
    """One plugin's scheduled jobs. Keys are the plugin's own; another plugin's never clash."""

    def __init__(
        self,
        scheduler: Scheduler,
        clock: Clock,
        make_context: Callable[[str, datetime, int], C],
    ):
        self._scheduler = scheduler
        self._clock = clock
        self._make_context = make_context
        self._slots: set[str] = set()
        self._closed = False

    def at(self, key: str, when: datetime, run: Callable[[C], Awaitable[None]]) -> None:
        """Run ``run`` once at ``when`` (at once if already past); replaces a job of that key
        and any retry of it still waiting.

        ``when`` is part of the key of the job's sends: give the time the work is *due* (kept
        in your table), not "now", or a run repeated after a restart is not recognised."""
        self.cancel(key)
        self._arm(key, when, run, attempt=0, then=None)

    def every(self, key: str, interval: timedelta, run: Callable[[C], Awaitable[None]]) -> None:
        """Run every ``interval``, first one interval from now."""
        if interval <= timedelta(0):
            raise ValueError("a job's interval must be positive")

        def following(due: datetime, jumped: timedelta) -> datetime:
            # The first due time after now: runs missed while a run was slow (or the host was
            # suspended) are skipped, not fired back to back. A clock moved on *during* the run
            # (a test's, a host suspended mid-run) counts as moved after it: the run it reached
            # still runs, once, late.
            now = self._clock.now() - max(jumped, timedelta(0))
            behind = max(0, int((now - due) / interval))
            return due + interval * (behind + 1)

        self.cancel(key)
        self._arm(key, self._clock.now() + interval, run, attempt=0, then=following)

    def cron(
        self, key: str, expression: str, timezone: str, run: Callable[[C], Awaitable[None]]
    ) -> None:
        """Run on a crontab schedule (``"0 18 * * sun"``) in an IANA time zone."""
        trigger = CronTrigger.from_crontab(expression, timezone=timezone)

        def following(due: datetime, jumped: timedelta) -> datetime:
            after = max(due, self._clock.now()) + timedelta(seconds=1)
            nxt = trigger.get_next_fire_time(None, after)
            assert nxt is not None  # a crontab always has a next time
            return nxt

        first = trigger.get_next_fire_time(None, self._clock.now())
        assert first is not None
        self.cancel(key)
        self._arm(key, first, run, attempt=0, then=following)

    def cancel(self, key: str) -> None:
        """Cancel the job of ``key`` and any retry of it still waiting."""
        for slot in [s for s in self._slots if s == key or s.startswith((key + _RETRY, key + "@"))]:
            self._slots.discard(slot)
            self._scheduler.cancel(slot)

    def cancel_all(self) -> None:
        """Cancel every job of this plugin (the core calls this at teardown); a run still
        going then arms no next run and no retry."""
        self._closed = True
        for slot in list(self._slots):
            self._slots.discard(slot)
            self._scheduler.cancel(slot)

    def pending(self) -> set[str]:
        """The keys of the jobs (and retries) waiting to run."""
        return set(self._slots)

    def _arm(
        self,
        key: str,
        due: datetime,
        run: Callable[[C], Awaitable[None]],
        attempt: int,
        then: Callable[[datetime, timedelta], datetime] | None,
    ) -> None:
        if self._closed:
            return
        # Each run waits in a slot of its own: a repeating job's next run must not share the
        # scheduler key of the run still going (apscheduler's own timers skipped it as a
        # second instance), and a retry must not replace the next run.
        if attempt:
            slot = f"{key}{_RETRY}{attempt}@{due.isoformat()}"
        elif then is not None:
            slot = f"{key}@{due.isoformat()}"
        else:
            slot = key
        self._slots.add(slot)

        async def fire() -> None:
            self._slots.discard(slot)
            started, started_real = self._clock.now(), time.monotonic()
            try:
                await run(self._make_context(key, due, attempt))
            except Exception:
                self._failed(key, due, run, attempt)
            finally:
                if then is not None:
                    # How much further the clock went than the real time the run took.
                    took = timedelta(seconds=time.monotonic() - started_real)
                    jumped = self._clock.now() - started - took
                    self._arm(key, then(due, jumped), run, attempt=0, then=then)

        when = due if attempt == 0 else self._clock.now() + RETRY_DELAYS[attempt - 1]
        self._scheduler.at(slot, when, fire)

    def _failed(
        self, key: str, due: datetime, run: Callable[[C], Awaitable[None]], attempt: int
    ) -> None:
        if self._closed:
            log.exception("job %s (due %s) failed while stopping", key, due)
            return
        if attempt >= len(RETRY_DELAYS):
            log.exception("job %s (due %s) failed; giving up after %d tries", key, due, attempt + 1)
            return
        log.exception("job %s (due %s) failed; trying again in %s", key, due, RETRY_DELAYS[attempt])
        self._arm(key, due, run, attempt=attempt + 1, then=None)
