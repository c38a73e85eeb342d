"""Wiring: settings → database → transport → bot, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

from civicbot.config import Settings
from civicbot.core.bot import Bot
from civicbot.core.loader import PluginLoadError, PluginProblem, discover_all, split_problems
from civicbot.core.plugin import Plugin
from civicbot.scheduling.clock import SystemClock
from civicbot.scheduling.scheduler import ClockScheduler
from civicbot.storage.data_lock import DataDirLock
from civicbot.storage.database import Database
from civicbot.transport.matrix import MatrixTransport
from civicbot.web import PublicSite
from civicbot.web.pdf import print_pdf
from civicbot.web.server import start_server

log = logging.getLogger(__name__)


async def run_bot(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; in-flight handlers finish and state is saved before returning."""
    classes, problems = discover_all(settings.bot.extra_plugins)
    fatal, optional = split_problems(problems, settings.plugins)
    if fatal:  # every plugin that can't load, named in one go
        raise PluginLoadError("; ".join(problem.why for problem in fatal + optional))
    data_dir = settings.bot.data_dir
    # Before anything in data_dir is opened: a second process must not touch the database,
    # the sync token or the crypto store of the running one (DataDirInUse names its pid). The
    # lock makes the folder, or says why it cannot (DataDirUnusable).
    with DataDirLock(data_dir):
        await _run_locked(settings, classes, optional)


async def _run_locked(
    settings: Settings, classes: dict[str, type[Plugin[Any]]], optional: list[PluginProblem]
) -> None:
    data_dir = settings.bot.data_dir
    db = await Database.open(data_dir / "civicbot.sqlite3")
    clock = SystemClock.from_environment()
    scheduler = ClockScheduler(clock)
    transport: MatrixTransport | None = None
    try:
        transport = MatrixTransport(settings.matrix, data_dir, db, clock=clock)
        bot = Bot(settings, transport, db, clock, scheduler, classes)
    except BaseException:
        # A refusal here (a missing secret.key) must still close the database: its worker
        # thread is not a daemon, and the process would hang at exit after the one-line error.
        if transport is not None:
            await transport.close()
        await db.close()
        raise
    for problem in optional:
        bot.leave_out(problem.name, problem.why)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _request_stop, sig, transport)
    if clock.offset_file is not None:  # a test moves the time: see civicbot.scheduling.clock
        loop.add_signal_handler(signal.SIGUSR1, _clock_moved, clock, scheduler)
    web_runner = None
    clean = False
    try:
        await transport.login()
        if transport.stop_requested:  # SIGTERM while logging in: nothing started, nothing owed
            clean = True
            return
        # Plugins arm jobs in setup(); none runs until every plugin has loaded (all or nothing).
        await bot.start()
        web_runner = await start_web(bot.site)
        scheduler.start()
        log.info("civicbot %s running as %s", bot.version, transport.user_id)
        await transport.run(bot.accept)
        clean = True
    finally:
        if web_runner is not None:
            await web_runner.cleanup()
        scheduler.shutdown()
        await bot.stop()
        await transport.close()
        await db.close()
        # Only a stop that was asked for and finished is clean; a failure says so instead.
        if clean:
            log.info("stopped cleanly")
        else:
            log.error("stopped after a failure (see above)")


async def start_web(site: PublicSite) -> Any:
    """Serve the public pages when the operator set ``[web] listen`` and ``public_url``."""
    config = site.config
    if not config.serving:
        return None
    host, _, port = config.listen.rpartition(":")
    host = host.strip("[]")
    runner = await start_server(site, host, int(port))
    local = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    local = f"[{local}]" if ":" in local and not local.startswith("[") else local

    async def printer(room_id: str) -> bytes:
        return await print_pdf(f"http://{local}:{port}/r/{site.slug(room_id)}/noticeboard",
                               config.chromium)  # fmt: skip

    site.printer = printer
    return runner


def _request_stop(sig: signal.Signals, transport: MatrixTransport) -> None:
    if transport.stop_requested:
        # Asked twice: the operator means now. Nothing is lost by not finishing: what was in
        # flight is replayed at the next start (positions are saved only once handled, promised
        # effects stay in the outbox), exactly as after a crash.
        log.warning("received %s again: stopping now without finishing", sig.name)
        logging.shutdown()
        os._exit(128 + sig.value)
    log.info("received %s: finishing what is in flight, then stopping", sig.name)
    transport.request_stop()


def _clock_moved(clock: SystemClock, scheduler: ClockScheduler) -> None:
    clock.reload()
    scheduler.wake()
