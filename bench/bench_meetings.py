"""Meetings at neighbourhood scale: the core (store + service) part of the two targets.

Targets (meetings issue):

* a meeting with 20 slots and 300 people answering: each answer recorded and the table edit
  sent within 50 ms of bot time (median, p99 reported) on one core;
* 10,000 future reminders across 1,000 rooms re-armed at start in under 1 s.

This skeleton measures what exists before the plugin is wired: no Matrix, no templates.

Part 1: 300 people each answer a 20-slot meeting ``--rounds`` times (later rounds change their
mind) with ``!avail``-style text. Per answer it times: reading the text, recording the ballot in
SQLite, loading every ballot back, ranking the table and picking the best slot, and rendering
a plain-text table (a stand-in for the template the plugin will use). The edit's send is not
included: it belongs to the transport.

Part 2: 1,000 rooms, each with a one-off meeting and a weekly meeting for 4 weeks (10 future
reminders per room at the default 24 h and 1 h offsets; 10,000 in all), plus 2,000 ledger keys
of reminders already sent. It then opens the database afresh, as at start, loads the fixed
meetings and the ledger, and computes every pending reminder with its key, sorted by due time:
what the plugin hands to the scheduler.

    python bench/bench_meetings.py [--people 300] [--slots 20] [--rounds 2] [--rooms 1000]
        [--repeats 5] [--cpu N | --no-pin]

Prints a markdown table; exits 1 when a target is missed, 2 when a count is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from civicbot_plugins.meetings.models import MIGRATIONS
from civicbot_plugins.meetings.parsing import Proposal
from civicbot_plugins.meetings.records import RecordStore
from civicbot_plugins.meetings.recurrence import Frequency, Recurrence
from civicbot_plugins.meetings.reminders import DEFAULT_OFFSETS, pending_reminders
from civicbot_plugins.meetings.service import best_slot, format_slot, parse_availability, tally
from civicbot_plugins.meetings.store import MeetingStore

from civicbot.storage import Database

ANSWER_TARGET_MS = 50.0
REARM_TARGET_S = 1.0
LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 12, 1, 19, tzinfo=UTC)
HOUR = timedelta(hours=1)


def render(table, duration: timedelta) -> str:
    """Roughly what the availability message holds: one line per slot with counts and names."""
    lines = []
    for row in table.by_number:
        names = ", ".join(row.yes[:10]) + (f" +{len(row.yes) - 10}" if len(row.yes) > 10 else "")
        slot = format_slot(row.start, duration, LONDON, NOW)
        lines.append(
            f"{row.number}. {slot}: {len(row.yes)} yes, {len(row.maybe)} if need be {names}"
        )
    best = best_slot(table)
    if best is not None:
        lines.append(f"Best so far: {best.slot.number}")
    return "\n".join(lines)


def answer_text(rng: random.Random, slots: int) -> str:
    marks = ["y", "?", "n"]
    return " ".join(f"{n}{rng.choice(marks)}" for n in range(1, slots + 1) if rng.random() < 0.7)


async def bench_answers(
    people: int, slots: int, rounds: int, folder: Path
) -> tuple[list[float], int]:
    db = await Database.open(folder / "answers.sqlite3")
    await db.migrate("meetings", MIGRATIONS)
    store = MeetingStore(db)
    starts = tuple(NOW + timedelta(days=3 + i, hours=i % 4) for i in range(slots))
    proposal = Proposal("Bench meeting", starts, HOUR, LONDON)
    meeting, _ = await store.create("!bench:x", "$bench", "@org:x", proposal, NOW)
    rng = random.Random(7)
    timings: list[float] = []
    ts = 0
    table = None
    for _ in range(rounds):
        for person in range(people):
            text = answer_text(rng, slots) or "none"
            ts += 1
            began = time.perf_counter()
            ballot = parse_availability(text, len(meeting.slots))
            await store.record_ballot(meeting.id, f"@resident{person}:x", ballot, ts, "command")
            table = tally(meeting.slots, await store.ballots(meeting.id))
            render(table, meeting.duration)
            timings.append((time.perf_counter() - began) * 1000)
    await db.close()
    return timings, table.respondents if table else 0


async def seed_reminders(rooms: int, path: Path) -> int:
    db = await Database.open(path)
    await db.migrate("meetings", MIGRATIONS)
    store, records = MeetingStore(db), RecordStore(db)
    rule = Recurrence(Frequency.WEEKLY, weekday=3, count=4)
    expected = 0
    async with db.transaction():
        for room in range(rooms):
            room_id = f"!room{room}:x"
            when = NOW + timedelta(days=2 + room % 20, hours=room % 5)
            one_off, _ = await store.create(
                room_id, f"$a{room}", "@org:x", Proposal("One-off", (when,), HOUR, LONDON), NOW
            )
            await store.fix(one_off.id, 1, "@org:x", NOW)
            weekly_start = NOW + timedelta(days=2 + (room % 7))
            weekly = Proposal("Weekly", (weekly_start,), HOUR, LONDON, recurrence=rule)
            await store.create(room_id, f"$b{room}", "@org:x", weekly, NOW)
            expected += 2 + 4 * 2
            for old in range(2):  # reminders sent for meetings long gone
                await records.claim_reminder(
                    f"M0/old{room}-{old}", one_off.id, NOW - timedelta(days=30), "on_time", NOW
                )
    await db.close()
    return expected


async def rearm(path: Path) -> tuple[float, int]:
    began = time.perf_counter()
    db = await Database.open(path)
    await db.migrate("meetings", MIGRATIONS)
    store, records = MeetingStore(db), RecordStore(db)
    meetings = await store.active(NOW)
    sent = await records.reminder_keys()
    armed = []
    for meeting in meetings:
        schedule = meeting.schedule()
        if schedule is None:
            continue
        armed.extend(
            pending_reminders(
                meeting.id, schedule, DEFAULT_OFFSETS, NOW, sent, since=meeting.changed_at
            )
        )
    armed.sort(key=lambda r: (r.due_at, r.key))
    elapsed = time.perf_counter() - began
    await db.close()
    return elapsed, len(armed)


def pin(cpu: int | None) -> str:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--slots", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    pinned = pin(None if args.no_pin else args.cpu)
    status = 0
    with tempfile.TemporaryDirectory() as folder:
        timings, respondents = await bench_answers(
            args.people, args.slots, args.rounds, Path(folder)
        )
        if respondents != args.people:
            print(f"wrong count: {respondents} respondents, expected {args.people}")
            status = 2
        timings.sort()
        median = statistics.median(timings)
        p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
        path = Path(folder) / "reminders.sqlite3"
        expected = await seed_reminders(args.rooms, path)
        runs = [await rearm(path) for _ in range(args.repeats)]
        counts = {count for _, count in runs}
        if counts != {expected}:
            print(f"wrong count: armed {sorted(counts)}, expected {expected}")
            status = 2
        rearm_times = sorted(elapsed for elapsed, _ in runs)
    print(f"meetings core benchmark ({pinned}, Python {sys.version.split()[0]})\n")
    print("| measure | result | target |")
    print("|---|---|---|")
    answers = len(timings)
    print(
        f"| answer → record + reload + rank + render, {args.people} people × {args.slots} slots,"
        f" {answers} answers | median {median:.2f} ms, p99 {p99:.2f} ms, max {timings[-1]:.2f} ms"
        f" | < {ANSWER_TARGET_MS:.0f} ms |"
    )
    print(
        f"| re-arm {expected} future reminders across {args.rooms} rooms (open db, load, compute,"
        f" sort), {args.repeats} runs | median {statistics.median(rearm_times):.3f} s,"
        f" best {rearm_times[0]:.3f} s | < {REARM_TARGET_S:.0f} s |"
    )
    if status == 0 and (
        median > ANSWER_TARGET_MS or p99 > ANSWER_TARGET_MS
        or statistics.median(rearm_times) > REARM_TARGET_S
    ):  # fmt: skip
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
