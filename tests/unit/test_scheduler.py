"""The scheduler facade: scoped keys, past deadlines fire at once, failures are contained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from civicbot.scheduling.clock import FakeClock
from civicbot.scheduling.scheduler import ClockScheduler, ManualScheduler


async def test_jobs_fire_in_time_order_and_only_when_due():
    clock = FakeClock()
    scheduler = ManualScheduler(clock).scoped("polls")
    fired: list[str] = []

    async def job(name: str) -> None:
        fired.append(name)

    scheduler.at("late", clock.now() + timedelta(hours=2), lambda: job("late"))
    scheduler.at("early", clock.now() + timedelta(hours=1), lambda: job("early"))
    scheduler.at("past", clock.now() - timedelta(days=1), lambda: job("past"))
    await scheduler.advance()
    assert fired == ["past"]
    await scheduler.advance(timedelta(hours=3))
    assert fired == ["past", "early", "late"]
    assert scheduler.pending() == []


async def test_replacing_and_cancelling_by_key():
    clock = FakeClock()
    scheduler = ManualScheduler(clock)
    fired: list[int] = []

    async def job(n: int) -> None:
        fired.append(n)

    scheduler.at("close", clock.now() + timedelta(hours=1), lambda: job(1))
    scheduler.at("close", clock.now() + timedelta(hours=1), lambda: job(2))
    scheduler.at("other", clock.now() + timedelta(hours=1), lambda: job(3))
    scheduler.cancel("other")
    await scheduler.advance(timedelta(hours=2))
    assert fired == [2]


async def test_a_failing_job_does_not_stop_the_others(caplog):
    clock = FakeClock()
    scheduler = ManualScheduler(clock)
    fired: list[str] = []

    async def bad() -> None:
        raise RuntimeError("job broke")

    async def good() -> None:
        fired.append("good")

    scheduler.at("a", clock.now(), bad)
    scheduler.at("b", clock.now(), good)
    await scheduler.advance()
    assert fired == ["good"]
    assert "job broke" in caplog.text


async def test_cron_jobs_repeat_in_their_time_zone():
    clock = FakeClock()  # Monday 23 Nov 2026 09:00 UTC
    scheduler = ManualScheduler(clock)
    fired: list[str] = []

    async def weekly() -> None:
        fired.append(clock.now().isoformat())

    scheduler.cron("digest", "0 18 * * sun", "Europe/London", weekly)
    await scheduler.advance(timedelta(days=14))
    assert len(fired) == 2


async def test_the_real_scheduler_runs_a_past_deadline_at_once():
    import asyncio

    from civicbot.scheduling.clock import SystemClock
    from civicbot.scheduling.scheduler import ClockScheduler

    clock = SystemClock()
    scheduler = ClockScheduler(clock)
    scheduler.start()
    fired = asyncio.Event()

    async def job() -> None:
        fired.set()

    try:
        scheduler.scoped("polls").at("close-P-1", clock.now() - timedelta(days=2), job)
        await asyncio.wait_for(fired.wait(), 10)
    finally:
        scheduler.shutdown()


async def test_a_repeating_job_slower_than_its_interval_keeps_running():
    """With apscheduler's own timers, a next run armed under the id of the run still going was
    skipped as a second instance and removed: the job stopped for good. Missed runs are skipped, not
    fired back to back."""
    import asyncio
    import itertools

    from civicbot.scheduling.clock import SystemClock
    from civicbot.scheduling.jobs import Jobs
    from civicbot.scheduling.scheduler import ClockScheduler

    clock = SystemClock()
    scheduler = ClockScheduler(clock)
    scheduler.start()
    dues: list[float] = []

    async def slow(due: object) -> None:
        dues.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.5)

    jobs: Jobs[object] = Jobs(scheduler.scoped("t"), clock, lambda key, due, attempt: due)
    try:
        jobs.every("tick", timedelta(seconds=0.2), slow)
        await asyncio.sleep(2.0)
    finally:
        jobs.cancel_all()
        scheduler.shutdown()
    assert len(dues) >= 3  # it went on after the first slow run
    gaps = [b - a for a, b in itertools.pairwise(dues)]
    assert min(gaps) >= 0.45  # one at a time: the missed ones were skipped, not piled up


async def test_a_clock_moved_on_during_a_run_still_has_the_run_it_reached():
    """The clock moved a minute on while a minute's run was finishing (an integration test moves
    the bot's clock as soon as it sees the run's effect): the next run is the one it reached, not
    skipped as if the run had been slow (tests/integration/test_digest.py waited for it in vain)."""
    from civicbot.scheduling.jobs import Jobs

    clock = FakeClock()
    scheduler = ManualScheduler(clock)
    start = clock.now()
    runs: list[object] = []

    async def tick(due: object) -> None:
        runs.append(due)
        if len(runs) == 1:
            clock.set(clock.now() + timedelta(minutes=1))  # moved on while this run is going

    jobs: Jobs[object] = Jobs(scheduler.scoped("t"), clock, lambda key, due, attempt: due)
    jobs.every("tick", timedelta(minutes=1), tick)
    await scheduler.advance(timedelta(minutes=1))
    await scheduler.advance()
    assert runs == [start + timedelta(minutes=1), start + timedelta(minutes=2)]
    # A clock several intervals on has one late run, then the missed ones are skipped, not
    # fired back to back.
    clock.set(clock.now() + timedelta(minutes=5))
    await scheduler.advance()
    assert runs[-1] == start + timedelta(minutes=3) and len(runs) == 3
    await scheduler.advance(timedelta(minutes=1))
    assert runs[-1] == start + timedelta(minutes=8)


async def test_a_run_slower_than_its_interval_is_never_followed_back_to_back():
    """A run that takes 1.5 intervals (its clock and the real time both go on by as much) skips
    the due time it overlapped: the next run is the first due time still ahead, never one fired
    the instant the slow one ends. (A clock moved further than the real time is a jump, above.)"""
    import asyncio

    from civicbot.scheduling.jobs import Jobs

    clock = FakeClock()
    scheduler = ManualScheduler(clock)
    start = clock.now()
    step = timedelta(seconds=0.2)
    dues: list[object] = []

    async def slow(due: object) -> None:
        dues.append(due)
        clock.set(clock.now() + step * 1.5)
        await asyncio.sleep((step * 1.5).total_seconds())  # as long in real time

    jobs: Jobs[object] = Jobs(scheduler.scoped("t"), clock, lambda key, due, attempt: due)
    jobs.every("slow", step, slow)
    await scheduler.advance(step * 5)
    assert dues == [start + step, start + step * 3, start + step * 5]


async def test_the_real_scheduler_runs_on_the_bots_clock_when_a_test_moves_it(tmp_path):
    """Due times and the timers that wait for them read one clock: moved an hour on (as the
    integration tests move the bot process's clock), a job due in an hour runs at once."""
    import asyncio

    from civicbot.scheduling.clock import SystemClock

    offset = tmp_path / "offset"
    clock = SystemClock(offset)
    scheduler = ClockScheduler(clock)
    scheduler.start()
    fired: list[datetime] = []
    ran = asyncio.Event()

    async def job() -> None:
        fired.append(clock.now())
        ran.set()

    due = clock.now() + timedelta(hours=1)
    try:
        scheduler.scoped("meetings").at("remind-M-1", due, job)
        await asyncio.sleep(0.05)
        assert not fired
        offset.write_text("3600.5")
        clock.reload()
        scheduler.wake()
        await asyncio.wait_for(ran.wait(), 10)
    finally:
        scheduler.shutdown()
    assert fired[0] >= due
    assert scheduler.pending() == []


def test_the_system_clock_reads_its_offset_only_when_a_test_set_one(tmp_path, monkeypatch):
    from civicbot.scheduling.clock import OFFSET_FILE_ENV, SystemClock

    monkeypatch.delenv(OFFSET_FILE_ENV, raising=False)
    assert SystemClock.from_environment().offset_file is None
    offset = tmp_path / "offset"
    monkeypatch.setenv(OFFSET_FILE_ENV, str(offset))
    clock = SystemClock.from_environment()  # no file yet: no offset
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 5
    offset.write_text("86400\n")
    clock.reload()
    assert abs((clock.now() - datetime.now(UTC)).total_seconds() - 86400) < 5
