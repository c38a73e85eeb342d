"""Scheduled work that piled up while the bot was down: 10,000 mutual-aid expiries at once.

Target (issue 23): the expiry job clears everything that fell due in one run (it used to take
500 every 15 minutes: 20 runs, 4 h 45 min for 10,000), each poster told once by DM, paced by
the send pacer (each DM is its own room, so pacing holds none of them back here).

The real :class:`~civicbot.core.bot.Bot` with every built-in plugin, a real SQLite database in
a temporary folder, the fake transport and a manual clock, as ``bench_dispatch.py`` has. The
posts are written straight into the mutual aid table, expired a day ago, each by its own
poster; then the bot starts (as after downtime) and the job's first run is timed, wall and
CPU. It checks that no open post is left past its expiry and that 10,000 DMs went out.

Re-arming 10,000 meeting reminders at start has its own bench: ``bench/bench_meetings.py``.

    python bench/bench_backlog.py [--posts 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from civicbot_plugins.mutual_aid.models import to_iso

from civicbot.testing.harness import BotHarness

TARGET_S = 60.0  # one run, however many fell due


async def main_async(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="civicbot-bench-") as tmp:
        async with BotHarness.create(Path(tmp)) as h:
            room = h.room()
            now = h.clock.now()
            old, due = to_iso(now - timedelta(days=20)), to_iso(now - timedelta(days=1))
            rows = [
                ("offer", n, room, f"bench{n}", f"@resident{n}:test", f"lifts {n}", "lifts",
                 "", "anytime", 2, old, old, due)
                for n in range(1, args.posts + 1)
            ]  # fmt: skip
            await h.db.executemany(
                "INSERT INTO mutual_aid_posts (kind, number, room_id, source_key, poster, body,"
                " terms, category, urgency, urgency_rank, created_at, updated_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            await h.db.execute(
                "INSERT INTO mutual_aid_sequences (kind, last) VALUES ('offer', ?)", (args.posts,)
            )
            sent = len(h.transport.sent)
            wall, cpu = time.perf_counter(), time.process_time()
            await h.bot.handle_batch([])  # the first sync after the start: caught up
            await h.advance(timedelta(minutes=15))  # the job's run at start, then its next
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            left = await h.db.fetchval(
                "SELECT count(*) FROM mutual_aid_posts WHERE state = 'open' AND expires_at <= ?",
                (to_iso(h.clock.now()),),
            )
            told = sum(1 for s in h.transport.sent[sent:] if "has expired" in s.body)
    print()
    print(f"civicbot backlog benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print()
    print("| work that piled up | done in one run | wall s | CPU s | DMs |")
    print("|---|:-:|---:|---:|---:|")
    print(
        f"| {args.posts:,} mutual-aid expiries | {'yes' if left == 0 else f'NO, {left} left'} "
        f"| {wall:.1f} | {cpu:.1f} | {told:,} |"
    )
    if left or told != args.posts:
        print("FAIL: not everything due was expired and told", file=sys.stderr)
        return 2
    return 0 if wall <= TARGET_S else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=10_000, help="expiries that fell due")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
