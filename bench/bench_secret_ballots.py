"""How long one secret ballot takes to cast, by how many are stored already.

Secret ballots live in the engine's private store (``civicbot/storage/private_store.py``:
rollback journal, synchronous=FULL, secure_delete). Cast here with batches of one, the worst
case: every cast writes its voter, and (once two wait) a batch of one ballot in three more
transactions, each rewriting the table it touches in key order, so the cost grows with the number
of secret votes stored in all polls. In-process, on a temporary directory; no homeserver.

    python bench/bench_secret_ballots.py [--stored 0,1000,5000] [--casts 50] [--dir DIR]

Prints a markdown table: median and 95th percentile per cast.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from civicbot_plugins.polls.migrations import MIGRATIONS
from civicbot_plugins.polls.models import NewPoll
from civicbot_plugins.polls.secret import COUNTED
from civicbot_plugins.polls.service import Option, PollKind
from civicbot_plugins.polls.store import PollStore

from civicbot.storage.database import Database


async def measure(stored: int, casts: int, directory: Path) -> list[float]:
    db = await Database.open(directory / "civicbot.sqlite3")
    await db.migrate("polls", MIGRATIONS)
    store = PollStore(db, lambda text: "salt:" + text)
    now = datetime.now(UTC)
    poll, _ = await store.create(
        NewPoll(
            room_id="!r:bench",
            source_event_id="$poll",
            creator="@a:bench",
            question="Q?",
            kind=PollKind.SINGLE,
            max_selections=1,
            options=[Option("a", "A"), Option("b", "B"), Option("c", "C")],
            secret=True,
            hidden=True,
            timezone="UTC",
            created_at=now,
            closes_at=now + timedelta(days=1),
            thread_root=None,
        )
    )
    await store.mark_posted(poll.id, None, "$text")
    poll = await store.get(poll.id)
    assert poll is not None
    for n in range(stored):
        await store.secret.cast(poll, f"@voter{n:06d}:bench", f"$s{n}", ["abc"[n % 3]])
    times = []
    for n in range(casts):
        started = time.perf_counter()
        status = await store.secret.cast(poll, f"@new{n:06d}:bench", f"$n{n}", ["abc"[n % 3]])
        times.append(time.perf_counter() - started)
        assert status == COUNTED
    assert await store.secret.voter_count(poll.id) == stored + casts
    await store.secret.close()
    await db.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stored", default="0,1000,5000")
    parser.add_argument("--casts", type=int, default=50)
    parser.add_argument("--dir", default=None, help="where to put the files (default: a temp dir)")
    args = parser.parse_args()
    print("| secret votes stored | median per cast | p95 per cast |")
    print("|---|---|---|")
    for stored in (int(s) for s in args.stored.split(",")):
        with tempfile.TemporaryDirectory(dir=args.dir) as directory:
            times = asyncio.run(measure(stored, args.casts, Path(directory)))
        p95 = sorted(times)[int(len(times) * 0.95) - 1]
        print(f"| {stored:,} | {statistics.median(times) * 1000:.1f} ms | {p95 * 1000:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
