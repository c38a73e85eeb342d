"""Wiring: settings → database → transport → bot, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from civicbot.config import Settings
from civicbot.core.bot import Bot
from civicbot.core.loader import discover
from civicbot.scheduling.clock import SystemClock
from civicbot.scheduling.scheduler import ApScheduler
from civicbot.storage.database import Database
from civicbot.transport.matrix import MatrixTransport

log = logging.getLogger(__name__)


async def run_bot(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; in-flight handlers finish and state is saved before returning."""
    data_dir = settings.bot.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    db = await Database.open(data_dir / "civicbot.sqlite3")
    clock = SystemClock()
    scheduler = ApScheduler(clock)
    transport = MatrixTransport(settings.matrix, data_dir, db)
    bot = Bot(settings, transport, db, clock, scheduler, discover(settings.bot.extra_plugins))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _request_stop, sig, transport)
    try:
        await transport.login()
        # Plugins arm jobs in setup(); none runs until every plugin has loaded (all or nothing).
        await bot.start()
        scheduler.start()
        log.info("civicbot %s running as %s", bot.version, transport.user_id)
        await transport.run(bot.accept)
    finally:
        scheduler.shutdown()
        await bot.stop()
        await transport.close()
        await db.close()
        log.info("stopped cleanly")


def _request_stop(sig: signal.Signals, transport: MatrixTransport) -> None:
    log.info("received %s: finishing what is in flight, then stopping", sig.name)
    transport.request_stop()
