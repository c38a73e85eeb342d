"""Consultations at neighbourhood scale: the close of one consultation with 5,000 respondents.

Targets (consultations issue):

* 5,000 respondents to one consultation: the close summary computed and posted in under 2 s;
* the councillor's CSV of those answers built in under 1 s.

In-process: the real bot (real SQLite database in a temporary directory, real templates and
plugins) through the fake transport, as ``civicbot.testing.harness.BotHarness`` builds it. A
councillor posts a consultation with 8 questions (free text, choose one, choose several and five
statements); 5,000 respondents' answers (40,000 rows) are written straight into the plugin's
tables (typing them one by one would time the dispatcher, not the close). Then ``!consult close
C-1`` is timed from the command to the summary's send (which also builds and sends the CSV by
DM), and the CSV is built again on its own. The same again for an anonymous consultation, whose
answers sit in the anonymous file; and one more anonymous submission is timed with 5,000 stored,
since each rewrites the tables in key order.

    python bench/bench_consultations.py [--respondents 5000] [--repeats 3]

Prints a markdown table; exits 1 when a target is missed, 2 when a count is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from civicbot_plugins.admin.plugin import AdminPlugin
from civicbot_plugins.consultations.plugin import ConsultationsPlugin

from civicbot.testing.harness import MODERATOR, BotHarness

SUMMARY_TARGET_S, CSV_TARGET_S = 2.0, 1.0
CLLR = "@cllr:bench"
CONSULT = (
    "!consult Park improvements\ncloses in 7 days\n{extra}\n"
    "text: What would make the park better?\n"
    "one: Which comes first? Benches / Lights / Trees / Toilets\n"
    "several: Which days do you visit? Weekdays / Saturday / Sunday\n"
    + "\n".join(f"statement: Statement number {n}" for n in range(1, 6))
)


def answers_of(rng: random.Random, n: int) -> dict[int, str]:
    return {
        1: f"Resident {n} would like {rng.choice(['benches', 'lights', 'a pond', 'trees'])}",
        2: rng.choice("abcd"),
        3: " ".join(sorted(rng.sample("abc", rng.randint(1, 3)))),
        **{q: rng.choice(("agree", "disagree", "pass")) for q in range(4, 9)},
    }


async def run_once(respondents: int, anonymous: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        h = await BotHarness.start(
            Path(tmp),
            {"consultations": ConsultationsPlugin, "admin": AdminPlugin},
            limits={"person_burst": 0, "room_burst": 0, "everywhere_burst": 0},
        )
        try:
            room = h.room(members=[CLLR])
            await h.say(room, MODERATOR, f"!role grant {CLLR} councillor")
            await h.say(room, CLLR, CONSULT.format(extra="anonymous" if anonymous else ""))
            plugin = h.bot.plugins["consultations"]
            assert isinstance(plugin, ConsultationsPlugin)
            rng = random.Random(7)
            people = [(f"@resident{n}:bench", answers_of(rng, n)) for n in range(respondents)]
            agree = sum(a[4] == "agree" for _, a in people)
            if anonymous:
                await plugin.anon.private.import_rows(
                    [("consultation:1", who, "", "") for who, _ in people[:-1]],
                    [("consultation:1", json.dumps(a)) for _, a in people[:-1]],
                )
                # The last respondent submits for real: what one submission costs at this size.
                started = time.perf_counter()
                await plugin.anon.submit(1, "salt", people[-1][0], "$bench", people[-1][1], False)
                submit_s = time.perf_counter() - started
            else:
                async with h.db.transaction():
                    await h.db.executemany(
                        "INSERT INTO consultations_answers VALUES (1, ?, ?, ?)",
                        [(who, q, v) for who, a in people for q, v in a.items()],
                    )
                    await h.db.executemany(
                        "INSERT INTO consultations_respondents VALUES (1, ?, 0, 0)",
                        [(who,) for who, _ in people],
                    )
                submit_s = 0.0
            sends = len(h.transport.sent)
            started = time.perf_counter()
            await h.say(room, CLLR, "!consult close C-1")
            close_s = time.perf_counter() - started
            bodies = [s.body for s in h.transport.sent[sends:]]
            summary = next(b for b in bodies if b.startswith("📊 Summary of C-1"))
            if f"{respondents} people answered" not in summary:
                print("wrong count of people:", summary[:200], file=sys.stderr)
                sys.exit(2)
            if f"agree {agree} ·" not in summary:
                print("wrong agree count:", summary[:400], file=sys.stderr)
                sys.exit(2)
            if len(summary.encode()) > 60_000:  # a Matrix event holds at most 64 KiB
                print(f"the summary is {len(summary.encode())} bytes", file=sys.stderr)
                sys.exit(2)
            c = await plugin.store.get(1)
            assert c is not None
            started = time.perf_counter()
            data = await plugin.runner.csv(c)
            csv_s = time.perf_counter() - started
            if data.count(b"\n") != respondents + 1:
                print("wrong number of CSV lines", file=sys.stderr)
                sys.exit(2)
            return {"close": close_s, "csv": csv_s, "submit": submit_s}
        finally:
            await h.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--respondents", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    failed = False
    print(f"| {args.respondents:,} respondents | median | best | target |")
    print("|---|---|---|---|")
    for anonymous in (False, True):
        runs = [await run_once(args.respondents, anonymous) for _ in range(args.repeats)]
        kind = "anonymous" if anonymous else "public"
        rows = [
            (f"{kind}: `!consult close` → summary posted (+ CSV by DM)", "close", SUMMARY_TARGET_S),
            (f"{kind}: CSV built", "csv", CSV_TARGET_S),
        ]
        if anonymous:
            rows.append(
                (f"{kind}: one more submission with {args.respondents:,} stored", "submit", 0)
            )
        for label, key, target in rows:
            values = [r[key] for r in runs]
            median, best = statistics.median(values), min(values)
            shown = f"< {target:.0f} s" if target else "—"
            print(f"| {label} | {median:.3f} s | {best:.3f} s | {shown} |")
            failed |= bool(target) and median >= target
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
