"""The weekly digest at neighbourhood scale, through the real bot and every built-in plugin.

Targets (digest issue):

* a room with 10,000 events and 500 items in a week: its digest built (every plugin's section
  and the week in numbers) and rendered in under 200 ms;
* digests for 1,000 rooms due at the same minute all posted within 5 minutes, without flooding
  any room or the homeserver.

Part 1 runs the real :class:`~civicbot.core.bot.Bot` (real SQLite database in a temporary folder,
real templates, every built-in plugin) on the in-memory fake transport. Over one week of fake
time a room gets 500 items typed as commands (200 polls, 150 offers, 150 needs) and 10,000
messages, 2,000 of them replies in 200 threads, handed to ``Bot.handle_batch`` in sync-sized
batches with their timestamps spread over the week, so the digest's observers count them as
they would live. Then the room's digest for that week is built and rendered ``--repeats``
times (``Composer.room``: every enabled plugin's ``digest_section``, the counts, jinja2 text
and HTML, the HTML tag check); median and worst are reported. It checks the digest names the
sections and the right numbers.

Part 2 starts the bot with 1,000 rooms (3 residents and a poll each), moves the clock to just
before Sunday 18:00 Europe/London, the default slot, and winds it past: one look for due
digests finds all 1,000. The fake transport timestamps every send (wall clock). Sends go
through the bot's per-room pacer (``limits`` defaults) and the digest's own rollout pacer
(``rollout_per_second``, default 8/s across all rooms), both sleeping in real time. Reported:
the wall time from the slot to the last digest, the peak sends in any one second (all rooms)
and the most digests any room got. Flood limits for *commands* are lifted while seeding (the
seeding is a flood by design), the send pacing is not.

    python bench/bench_digest.py [--rooms 1000] [--events 10000] [--items 500] [--repeats 20]
        [--rollout 8] [--cpu N | --no-pin]

Prints a markdown table; exits 1 when a target is missed, 2 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from civicbot_plugins.digest.plugin import DigestPlugin

from civicbot.core.events import Event
from civicbot.scheduling.clock import FakeClock
from civicbot.testing.harness import BotHarness
from civicbot.transport.fake import FakeTransport

BUILD_TARGET_MS = 200.0
ROLLOUT_TARGET_S = 300.0
START = datetime(2026, 11, 23, 9, tzinfo=UTC)  # Monday; the default slot is Sunday 18:00
SLOT = datetime(2026, 11, 29, 18, tzinfo=UTC)  # Europe/London is UTC in November
SEED_LIMITS = {"person_burst": 0, "room_burst": 0, "everywhere_burst": 0}


class ErrorCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class StampedTransport(FakeTransport):
    """The fake homeserver, noting when (wall clock) each event was sent to it."""

    def __init__(self, clock: FakeClock):
        super().__init__(clock=clock)
        self.stamps: list[tuple[float, str, str]] = []  # (monotonic, room, body)

    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> str:
        self.stamps.append((time.monotonic(), room_id, str(content.get("body", ""))))
        return await super().send_event(room_id, event_type, content, txn_id)


def digest_plugin(h: BotHarness) -> DigestPlugin:
    plugin = h.bot.plugins["digest"]
    assert isinstance(plugin, DigestPlugin)
    return plugin


def raw(n: int, sender: str, body: str, ts: datetime, root: str | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"msgtype": "m.text", "body": body, "m.mentions": {}}
    if root:
        content["m.relates_to"] = {"rel_type": "m.thread", "event_id": root}
    return {
        "event_id": f"$ev{n}:test",
        "sender": sender,
        "type": "m.room.message",
        "origin_server_ts": int(ts.timestamp() * 1000),
        "content": content,
    }


async def feed(h: BotHarness, room: str, raws: list[dict[str, Any]], batch: int = 50) -> None:
    for i in range(0, len(raws), batch):
        await h.bot.handle_batch([Event.from_raw(r, room) for r in raws[i : i + batch]])


async def bench_build(folder: Path, events: int, items: int, repeats: int) -> list[float]:
    clock = FakeClock(START)
    people = [f"@resident{i}:test" for i in range(40)]
    h = await BotHarness.start(folder, clock=clock, limits={**SEED_LIMITS, "sends_per_second": 0})
    try:
        room = h.room(members=people)
        polls, offers = items * 2 // 5, items * 3 // 10
        needs = items - polls - offers
        commands = (
            [f"!poll Question {n}? | Yes | No | Maybe" for n in range(polls)]
            + [f"!offer I can lend tool number {n} | ongoing" for n in range(offers)]
            + [f"!need help with job number {n} | this week" for n in range(needs)]
        )
        span = (SLOT - START).total_seconds()
        cmd_raws = [
            raw(n, people[n % 40], text, START + timedelta(seconds=n))
            for n, text in enumerate(commands)
        ]
        await feed(h, room, cmd_raws[:1])  # the first batch: caught up
        await feed(h, room, cmd_raws[1:])
        threads = max(1, events // 50)
        roots = [f"$ev{1_000_000 + t}:test" for t in range(threads)]
        msgs = []
        for n in range(events):
            ts = START + timedelta(seconds=span * n / events)
            if n < threads:
                msgs.append(raw(1_000_000 + n, people[n % 40], f"thread {n}", ts))
            elif n < threads + 2000:
                root = roots[n % threads]
                msgs.append(raw(2_000_000 + n, people[n % 40], "reply", ts, root=root))
            else:
                msgs.append(raw(2_000_000 + n, people[n % 40], f"message {n}", ts))
        await feed(h, room, msgs)
        clock.set(SLOT)
        plugin = digest_plugin(h)
        await plugin.counter.flush()
        timings = []
        rendered = None
        for _ in range(repeats):
            started = time.perf_counter()
            rendered = await plugin.composer.room(room, SLOT)
            timings.append((time.perf_counter() - started) * 1000)
        assert rendered is not None and rendered.html is not None
        text = rendered.text
        total = events + len(commands)
        replies = Counter(roots[n % threads] for n in range(threads, min(events, threads + 2000)))
        top = max(replies.values(), default=0)
        wanted = [
            "Polls and decisions",
            "Question 0?",  # each kind of item: the first 12, then how many more
            f"… and {polls - 12} more: !polls",
            "tool number 0",
            f"… and {offers - 12} more: !offers",
            f"job number {min(needs, 20) - 1}",  # the plugin lists the 20 oldest
            f"{total} messages",
            f"Busy thread: {top} replies",
        ]
        problems = [f"missing {part!r}" for part in wanted if part not in text]
        if problems:
            print("FAIL (part 1): " + "; ".join(problems), file=sys.stderr)
            print(text[:3000], file=sys.stderr)
            sys.exit(2)
        print(f"(part 1 digest: {len(text):,} characters of text, {len(rendered.html):,} of HTML)")
        return timings
    finally:
        await h.close()


async def bench_rollout(folder: Path, rooms: int, rollout: float) -> dict[str, float]:
    clock = FakeClock(START)
    transport = StampedTransport(clock)
    h = await BotHarness.start(
        folder,
        clock=clock,
        transport=transport,
        limits=SEED_LIMITS,
        plugins={"digest": {"rollout_per_second": rollout}},
    )
    try:
        ids = [h.room(members=[f"@a{r}:test", f"@b{r}:test", f"@c{r}:test"]) for r in range(rooms)]
        seed = [
            (raw(n, f"@a{n}:test", f"!poll Bins day in room {n}? | Mon | Tue", START), room)
            for n, room in enumerate(ids)
        ]
        for i in range(0, len(seed), 50):
            await h.bot.handle_batch([Event.from_raw(r, room) for r, room in seed[i : i + 50]])
        clock.set(SLOT - timedelta(minutes=2))
        await h.advance(timedelta(seconds=1))  # the repeating jobs catch up (missed runs skip)
        transport.stamps.clear()
        started = time.monotonic()
        await h.advance(timedelta(minutes=3))
        digests = [(t, room) for t, room, body in transport.stamps if body.startswith("📰")]
        per_room = Counter(room for _, room in digests)
        if len(per_room) != rooms or max(per_room.values()) != 1:
            print(
                f"FAIL (part 2): {len(per_room)} rooms got a digest, at most "
                f"{max(per_room.values(), default=0)} each",
                file=sys.stderr,
            )
            sys.exit(2)
        times = sorted(t for t, _, _ in transport.stamps)
        peak = max(
            sum(1 for u in times[i:] if u - t < 1.0) for i, t in enumerate(times)
        ) if times else 0  # fmt: skip
        return {
            "last_s": max(t for t, _ in digests) - started,
            "peak": float(peak),
            "per_room": float(max(per_room.values())),
        }
    finally:
        await h.close()


def pin(cpu: int | None) -> str:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


async def main_async(args: argparse.Namespace) -> int:
    errors = ErrorCounter()
    logging.getLogger().addHandler(errors)
    logging.getLogger().setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        timings = await bench_build(Path(tmp) / "build", args.events, args.items, args.repeats)
        rollout = await bench_rollout(Path(tmp) / "rollout", args.rooms, args.rollout)
    median, worst = statistics.median(timings), max(timings)
    print("| measure | value | target | met |")
    print("|---|---:|---:|:-:|")
    met_build = median < BUILD_TARGET_MS
    print(
        f"| digest of {args.events:,} events + {args.items} items built and rendered, median "
        f"(worst) of {args.repeats} | {median:.1f} ms ({worst:.1f} ms) | < {BUILD_TARGET_MS:.0f} ms"
        f" | {'yes' if met_build else 'NO'} |"
    )
    met_rollout = rollout["last_s"] < ROLLOUT_TARGET_S
    print(
        f"| {args.rooms:,} rooms due at one minute: all posted after | {rollout['last_s']:.1f} s |"
        f" < {ROLLOUT_TARGET_S:.0f} s | {'yes' if met_rollout else 'NO'} |"
    )
    print(f"| peak sends in any one second (all rooms) | {rollout['peak']:.0f} | "
          f"rollout {args.rollout:g}/s + burst | |")  # fmt: skip
    print(f"| most digests in one room | {rollout['per_room']:.0f} | 1 | |")
    if errors.records:
        print(f"FAIL: the bot logged {len(errors.records)} errors", file=sys.stderr)
        for record in errors.records[:5]:
            print(record.getMessage(), file=sys.stderr)
        return 2
    return 0 if met_build and met_rollout else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rollout", type=float, default=8.0)
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    where = pin(None if args.no_pin else args.cpu)
    print(f"\ncivicbot digest benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"CPython {platform.python_version()}, {where}\n")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
