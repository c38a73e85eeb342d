"""Issue 21 against a real Synapse: every promised effect happens exactly once, whatever instant
the process dies (each named crash point of civicbot.failpoints); a second process on one
data directory; room upgrades."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.integration.conftest import REPO


async def test_second_process_on_one_data_dir_exits_at_once_naming_the_first(bots):
    bot = await bots()
    first_pid = bot.process.pid
    started = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "civicbot", "run", "--config", str(bot.config_path)],
        capture_output=True,
        text=True,
        cwd=bot.directory,
        env={**os.environ, "PYTHONPATH": str(REPO / "tests" / "support")},
        timeout=60,
    )
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"pid {first_pid}" in lines[0]
    assert time.monotonic() - started < 20  # at once: no login, no sync, no crypto store
    assert "stopped cleanly" not in second.stdout + second.stderr
    assert bot.running
    assert await bot.stop() == 0
    assert "stopped cleanly" in bot.log_text()
