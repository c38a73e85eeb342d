"""Core dispatch throughput with the fake transport, on one core.

Targets: at most 5 µs of CPU per plain message with every built-in plugin on, i.e. at least
100,000 plain messages per second on one core (issue 23; the foundation issue asked 5,000/s),
and 1,000 commands per second, each command writing to the database. CPU time (user + system,
the aiosqlite thread included) per event is reported beside the rate, so a busy machine, which
slows the wall clock, says less about the bot than about its neighbours.

The real :class:`~civicbot.core.bot.Bot` runs with every discovered plugin plus a benchmark-only
plugin, a real SQLite database in a temporary directory and the in-memory
:class:`~civicbot.transport.fake.FakeTransport`. Raw events shaped like a homeserver's
``/sync`` timeline are normalised with :meth:`Event.from_raw` and handed to
:meth:`Bot.handle_batch` in sync-sized batches spread over a few rooms, exactly as the Matrix
transport does. Normalisation is inside the timed region; building the raw JSON is not.

    python bench/bench_dispatch.py [--messages N] [--commands N] [--repeats N] [--batch N]

civicbot's own rate limits are switched off unless ``--rate-limits default``, the way the
integration tests lift Synapse's: the per-person and per-room command limits (this bench is a
flood by design, 5,000 commands from five people in a second) and the per-room send pacing
(a few replies per second per room, which makes replies wait without costing any work, so the
bench would measure ``asyncio.sleep``). They are switched off through every plugin setting
named in ``LIFTED_LIMITS`` (the core's ``[limits]``, the pacer included).

Exits 1 when a measured median is short of its target, 2 when the bot answered wrongly.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from civicbot.core.bot import RECENT_IDS
from civicbot.core.commands import Rest, command
from civicbot.core.context import Context
from civicbot.core.events import Event
from civicbot.core.loader import discover
from civicbot.core.plugin import Plugin
from civicbot.testing.harness import BotHarness

MESSAGE_TARGET = 100_000.0  # plain messages per second
MESSAGE_CPU_TARGET_US = 5.0  # CPU per plain message
COMMAND_TARGET = 1_000.0  # commands per second, each writing to the database


class BenchWritePlugin(Plugin):
    """Benchmark only: one command that stores a row in its own table and replies."""

    name = "benchwrite"
    description = "Stores a line of text (benchmarks only)."
    migrations = (
        """
        CREATE TABLE benchwrite_items (
            id INTEGER PRIMARY KEY,
            room_id TEXT NOT NULL,
            sender TEXT NOT NULL,
            event_id TEXT NOT NULL UNIQUE,
            text TEXT NOT NULL,
            created_at INTEGER NOT NULL
        )
        """,
    )

    @command("benchwrite")
    async def benchwrite(self, ctx: Context, text: Rest) -> None:
        """Store a line of text."""
        item = await self.ctx.db.execute(
            "INSERT INTO benchwrite_items (room_id, sender, event_id, text, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (ctx.room_id, ctx.sender, ctx.event.event_id, text, int(ctx.now.timestamp())),
        )
        await ctx.reply(f"Saved as item {item}.")


class WrongAnswer(Exception):
    """The bot did not do what the events asked: the numbers would mean nothing."""


class ErrorCounter(logging.Handler):
    """A handled event must never log an error; the bench fails if one does."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Workload:
    name: str
    target: float
    body: str  # "{n}" is replaced by a running number
    replies: bool  # every event should get exactly one reply


WORKLOADS = {
    "plain": Workload("plain messages", MESSAGE_TARGET, "Bins go out on Monday? ({n})", False),
    "benchwrite": Workload(
        "!benchwrite (INSERT + reply)", COMMAND_TARGET, "!benchwrite bring chairs {n}", True
    ),
    "ping": Workload("!ping (built-in)", COMMAND_TARGET, "!ping", True),
}


class Bench:
    def __init__(self, harness: BotHarness, rooms: int, batch: int):
        self.h = harness
        self.rooms = [
            harness.room(members=[f"@resident{i}:test" for i in range(5)]) for _ in range(rooms)
        ]
        self.batch = batch
        self._next = 0

    def raw_events(self, workload: Workload, count: int) -> list[tuple[dict[str, Any], str]]:
        """``count`` timeline events as a homeserver sends them, round-robin over the rooms."""
        now_ms = int(time.time() * 1000)
        out = []
        for i in range(count):
            self._next += 1
            n = self._next
            out.append(
                (
                    {
                        "event_id": f"$bench{n}:test",
                        "sender": f"@resident{n % 5}:test",
                        "type": "m.room.message",
                        "origin_server_ts": now_ms + i,
                        "unsigned": {"age": 12},
                        "content": {
                            "msgtype": "m.text",
                            "body": workload.body.format(n=n),
                            "m.mentions": {},
                        },
                    },
                    self.rooms[n % len(self.rooms)],
                )
            )
        return out

    async def run(self, workload: Workload, count: int) -> tuple[float, float]:
        """Feed ``count`` events through the bot; check what it did; return events per second
        and µs of CPU per event."""
        raws = self.raw_events(workload, count)
        batches = [raws[i : i + self.batch] for i in range(0, len(raws), self.batch)]
        sent_before = len(self.h.transport.sent)
        handled_before = await self.h.db.fetchval("SELECT count(*) FROM core_handled")
        handle_batch = self.h.bot.handle_batch
        from_raw = Event.from_raw
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            await handle_batch([from_raw(raw, room_id) for raw, room_id in batch])
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        await self.verify(workload, raws, sent_before, handled_before)
        return count / elapsed, cpu / count * 1e6

    async def verify(
        self,
        workload: Workload,
        raws: list[tuple[dict[str, Any], str]],
        sent_before: int,
        handled_before: int,
    ) -> None:
        problems = []
        ids = [raw["event_id"] for raw, _ in raws]
        sent = self.h.transport.sent[sent_before:]
        handled = await self.h.db.fetchval("SELECT count(*) FROM core_handled") - handled_before
        if workload.replies:
            answered = [s.content.get("m.relates_to", {}).get("m.in_reply_to", {}) for s in sent]
            answered_ids = sorted(a.get("event_id", "") for a in answered)
            if len(sent) != len(ids) or answered_ids != sorted(ids):
                problems.append(f"{len(ids)} commands got {len(sent)} replies")
            if handled != len(ids):
                problems.append(f"{len(ids)} commands but {handled} new core_handled rows")
            if workload.body.startswith("!ping") and not all(
                s.body.startswith("Pong!") for s in sent
            ):
                problems.append("a !ping reply is not a pong")
        else:
            if sent or handled:
                problems.append(f"plain messages caused {len(sent)} sends, {handled} records")
            recent = ids[-RECENT_IDS:]
            unseen = sum(1 for event_id in recent if not self.h.bot.seen(event_id))
            if unseen:
                problems.append(f"{unseen} plain messages never reached the dispatcher")
        if workload.body.startswith("!benchwrite"):
            stored = 0
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                stored += await self.h.db.fetchval(
                    f"SELECT count(*) FROM benchwrite_items WHERE event_id IN ({marks})", chunk
                )
            if stored != len(ids):
                problems.append(f"{len(ids)} !benchwrite commands stored {stored} rows")
        if problems:
            raise WrongAnswer(f"{workload.name}: " + "; ".join(problems))


# Operator settings that switch civicbot's rate limits off (0 = off): the core's [limits].
LIFTED_LIMITS = {"person_burst": 0, "room_burst": 0, "everywhere_burst": 0, "sends_per_second": 0}


def limits_note(mode: str, lifted: dict[str, Any]) -> str:
    """For the report: which limits were lifted (the pacer too: ``sends_per_second = 0``)."""
    if mode == "default":
        return "civicbot rate limits at their defaults"
    return f"civicbot rate limits off ({', '.join(f'limits.{key}' for key in lifted)})"


def pin_to_one_core(cpu: int | None) -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this platform)"
    available = sorted(os.sched_getaffinity(0))
    chosen = cpu if cpu is not None else available[0]
    os.sched_setaffinity(0, {chosen})  # the aiosqlite thread inherits this
    return f"pinned to CPU {chosen}"


async def main_async(args: argparse.Namespace) -> int:
    errors = ErrorCounter()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().addHandler(errors)
    plugins = {**discover(builtin_only=True), BenchWritePlugin.name: BenchWritePlugin}
    lifted: dict[str, Any] = dict(LIFTED_LIMITS) if args.rate_limits == "off" else {}
    counts = {"plain": args.messages, "benchwrite": args.commands, "ping": args.commands}
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="civicbot-bench-") as tmp:
        async with BotHarness.create(Path(tmp), plugins, limits=lifted) as harness:
            args.limits_note = limits_note(args.rate_limits, lifted)
            bench = Bench(harness, args.rooms, args.batch)
            try:
                for key, workload in WORKLOADS.items():
                    await bench.run(workload, max(counts[key] // 5, args.batch))  # warm-up
                    results[key] = [
                        await bench.run(workload, counts[key]) for _ in range(args.repeats)
                    ]
            except WrongAnswer as exc:
                print(f"FAIL: {exc}", file=sys.stderr)
                return 2
    if errors.records:
        print(f"FAIL: the bot logged {len(errors.records)} errors", file=sys.stderr)
        return 2
    return report(args, results, counts)


def report(
    args: argparse.Namespace, results: dict[str, list[tuple[float, float]]], counts: dict[str, int]
) -> int:
    print()
    print(f"civicbot dispatch benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(
        f"{platform.python_implementation()} {platform.python_version()}, {args.pinned}, "
        f"{args.limits_note}, batches of {args.batch} events over {args.rooms} rooms, "
        f"{args.repeats} runs after a warm-up"
    )
    print()
    print(
        "| workload | events per run | median /s | best /s | target /s "
        "| CPU µs per event (median) | met |"
    )
    print("|---|---:|---:|---:|---:|---:|:-:|")
    short = []
    for key, workload in WORKLOADS.items():
        rates = [rate for rate, _ in results[key]]
        cpu_us = statistics.median(us for _, us in results[key])
        median = statistics.median(rates)
        # Plain messages are held to their CPU cost (the wall clock counts the neighbours).
        met = cpu_us <= MESSAGE_CPU_TARGET_US if key == "plain" else median >= workload.target
        if not met:
            short.append(workload.name)
        target = f"{workload.target:,.0f}" + (
            f" (≤ {MESSAGE_CPU_TARGET_US:g} µs CPU)" if key == "plain" else ""
        )
        print(
            f"| {workload.name} | {counts[key]:,} | {median:,.0f} | {max(rates):,.0f} | "
            f"{target} | {cpu_us:.1f} | {'yes' if met else 'NO'} |"
        )
    print()
    if short:
        print(f"FAIL: short of target: {', '.join(short)}", file=sys.stderr)
        return 1
    print("All targets met.")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="plain messages per run")
    parser.add_argument("--commands", type=int, default=5_000, help="commands per run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per workload")
    parser.add_argument("--batch", type=int, default=50, help="events per sync batch")
    parser.add_argument("--rooms", type=int, default=4, help="rooms the events are spread over")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: first)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one core")
    parser.add_argument(
        "--rate-limits",
        choices=("off", "default"),
        default="off",
        help="civicbot's own flood limits and send pacing (default: off, see above)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.pinned = "not pinned" if args.no_pin else pin_to_one_core(args.cpu)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
