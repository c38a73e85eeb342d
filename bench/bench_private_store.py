"""What the engine's private store (``civicbot/storage/private_store.py``) costs.

1. A secret vote's reply time: the real bot with the polls plugin and the fake transport
   (``BotHarness``), a database on disk; one voter after another sends ``!vote P-1 …`` by DM to
   a poll that already holds ``--stored`` secret votes; timed from the event handed to the bot
   to the reply sent. Each vote is one fsynced transaction (who), and every ``min_secret_voters``
   votes (3) a shuffled batch of ballots is written (three more).
2. A close with ``--answers`` anonymous answers: that many people take part in one item of a
   private store (batches of 3, as a consultation's ``counts_minimum``), then the item is sealed
   (what still waits is written) and every answer read back, as a consultation's close does.

    python bench/bench_private_store.py [--stored 0,1000] [--votes 60] [--answers 1000]

Prints markdown tables. No target: the README reports the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from civicbot_plugins.help.plugin import HelpPlugin
from civicbot_plugins.polls.plugin import PollsPlugin

from civicbot.storage.database import Database
from civicbot.storage.private_store import PrivateStore
from civicbot.testing.harness import BotHarness

ROOM_PEOPLE = 5


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def vote_times(stored: int, votes: int, directory: Path) -> list[float]:
    h = await BotHarness.start(
        directory,
        {"polls": PollsPlugin, "help": HelpPlugin},
        limits={"person_burst": 0, "room_burst": 0, "everywhere_burst": 0},
    )
    try:
        people = [f"@voter{n:05d}:bench" for n in range(votes)]
        room = h.room(members=people[:ROOM_PEOPLE])
        h.transport.rooms[room].members.extend(people[ROOM_PEOPLE:])
        await h.say(room, "@voter00000:bench", "!poll Spend it on? | Benches | Planters | secret")
        polls = h.bot.plugins["polls"]
        assert isinstance(polls, PollsPlugin)
        store = polls.store.secret.private
        await store.import_rows(
            [("poll:1", f"@old{n:06d}:bench", "", "") for n in range(stored)],
            [("poll:1", json.dumps([["a"], ""])) for _ in range(stored)],
        )
        times = []
        for n, who in enumerate(people):
            dm = f"!dm{n}:bench"
            h.transport.add_room(dm, [who], direct_for=who)
            event = h.transport.make_event(
                dm, who, "m.room.message", {"msgtype": "m.text", "body": f"!vote P-1 {n % 2 + 1}"}
            )
            started = time.perf_counter()
            await h.bot.handle_batch([event])
            times.append(time.perf_counter() - started)
            assert "has been counted" in h.last_text(dm), h.last_text(dm)
        return times
    finally:
        await h.close()


async def close_time(answers: int, directory: Path) -> tuple[list[float], float]:
    main = await Database.open(directory / "civicbot.sqlite3")
    store = PrivateStore(main, "bench")
    takes = []
    for n in range(answers):
        payload = json.dumps({"1": "abc"[n % 3], "2": f"free text answer number {n}"})
        started = time.perf_counter()
        await store.take_part("consultation:1", f"@r{n:06d}:bench", payload, batch=3)
        takes.append(time.perf_counter() - started)
    started = time.perf_counter()
    await store.seal("consultation:1", 3)
    read = await store.contributions("consultation:1")
    closed = time.perf_counter() - started
    assert len(read) == answers
    await store.close()
    await main.close()
    return takes, closed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stored", default="0,1000")
    parser.add_argument("--votes", type=int, default=60)
    parser.add_argument("--answers", type=int, default=1000)
    args = parser.parse_args()
    print("| secret votes stored | votes timed | reply median | reply p95 |")
    print("|---|---|---|---|")
    for stored in (int(s) for s in args.stored.split(",")):
        with tempfile.TemporaryDirectory() as directory:
            times = asyncio.run(vote_times(stored, args.votes, Path(directory)))
        print(
            f"| {stored:,} | {len(times)} | {statistics.median(times) * 1000:.1f} ms "
            f"| {percentile(times, 0.95) * 1000:.1f} ms |"
        )
    with tempfile.TemporaryDirectory() as directory:
        takes, closed = asyncio.run(close_time(args.answers, Path(directory)))
    print()
    print("| anonymous answers | per answer, median | per answer, p95 | close (seal + read all) |")
    print("|---|---|---|---|")
    print(
        f"| {args.answers:,} | {statistics.median(takes) * 1000:.1f} ms "
        f"| {percentile(takes, 0.95) * 1000:.1f} ms | {closed * 1000:.0f} ms |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
