"""Polls at neighbourhood scale: 1,000 residents voting through a real Synapse, and the tally.

Targets (polls issue):

* 1,000 residents vote on one poll within a minute against the local Synapse: every vote is
  counted, and the result is posted within 2 seconds of the close;
* a tally of 100,000 stored responses takes under 1 second.

Part 1 runs on loopback: a private Synapse started here, the real bot as a
``python -m civicbot run`` child process, and 1,000 residents registered with the shared-secret
admin API (bcrypt rounds are 4) who join a public room. Each resident taps one answer exactly as
Element does (an ``org.matrix.msc3381.poll.response`` event), with at most ``--concurrency``
requests in flight. Then ``!poll show`` waits until the bot has read every vote (ingestion), and
``!poll close`` is timed from its ``origin_server_ts`` to the results message's (server clock:
the bot's whole part of the work, including the end event and the recount of 1,000+ relations
from the homeserver) and from the send to the resident's sync delivering the results.

Part 2 is in-process: 100,000 responses (50,000 voters, each changing their vote once, some
spoiled or withdrawn) stored in the plugin's own tables in a temporary SQLite database, then
loaded and counted as ``!poll close`` does; the pure count and an instant runoff of 100,000
ranked ballots are timed too.

    python bench/bench_polls.py [--residents 1000] [--concurrency 32] [--responses 100000]
        [--skip-synapse] [--keep DIR]

Prints a markdown table; exits 1 when a target is missed, 2 when a count is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

PASSWORD = "a bench password"
READY = "listening for events"
RESPONSE = "org.matrix.msc3381.poll.response"
START = "org.matrix.msc3381.poll.start"
ANSWERS = ["1", "2", "3", "4"]
VOTE_WINDOW_S = 60.0
CLOSE_TARGET_S = 2.0
TALLY_TARGET_S = 1.0


@dataclass
class Row:
    what: str
    value: str
    target: str = ""
    met: str = ""


# -- part 1: through Synapse ---------------------------------------------------------------------
class Http:
    """One aiohttp session for every resident: each request carries its own token."""

    def __init__(self, base: str):
        self.base = base
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=120)
        )

    async def call(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for attempt in range(5):
            async with self.session.request(
                method, self.base + path, json=body, headers=headers
            ) as resp:
                data = await resp.json(content_type=None)
                if resp.status == 429 and attempt < 4:
                    await asyncio.sleep((data or {}).get("retry_after_ms", 200) / 1000)
                    continue
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {path}: {resp.status} {data}")
                return data or {}
        raise RuntimeError("unreachable")

    async def close(self) -> None:
        await self.session.close()


async def register(http: Http, secret: str, localpart: str) -> tuple[str, str]:
    """The shared-secret admin registration; returns (user id, access token)."""
    path = "/_synapse/admin/v1/register"
    nonce = (await http.call("GET", path))["nonce"]
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    for part in (nonce, localpart, PASSWORD):
        mac.update(part.encode())
        mac.update(b"\x00")
    mac.update(b"notadmin")
    body = {
        "nonce": nonce,
        "username": localpart,
        "password": PASSWORD,
        "admin": False,
        "mac": mac.hexdigest(),
    }
    data = await http.call("POST", path, body=body)
    return data["user_id"], data["access_token"]


async def bounded(concurrency: int, jobs: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def run(job: Any) -> Any:
        async with gate:
            return await job

    return await asyncio.gather(*(run(job) for job in jobs))


def start_bot(directory: Path, homeserver: str, user_id: str) -> subprocess.Popen[bytes]:
    config = directory / "config.toml"
    config.write_text(
        "[matrix]\n"
        f"homeserver = {json.dumps(homeserver)}\nuser_id = {json.dumps(user_id)}\n"
        f"password = {json.dumps(PASSWORD)}\n\n"
        f'[bot]\ndata_dir = {json.dumps(str(directory / "data"))}\nlog_level = "INFO"\n'
    )
    log = open(directory / "bot.log", "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "civicbot", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    finally:
        log.close()


async def wait_for_log(path: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    def read() -> str:
        return path.read_text(errors="replace") if path.exists() else ""

    deadline = time.monotonic() + 60
    while text not in await asyncio.to_thread(read):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the bot did not start:\n{(await asyncio.to_thread(read))[-3000:]}")
        await asyncio.sleep(0.05)


async def through_synapse(args: argparse.Namespace, workdir: Path) -> tuple[list[Row], bool]:
    from civicbot.testing.client import Resident
    from civicbot.testing.synapse import LocalSynapse

    rows: list[Row] = []
    synapse = LocalSynapse(workdir / "synapse")
    synapse.start()
    http = Http(synapse.url)
    bot: subprocess.Popen[bytes] | None = None
    organiser: Resident | None = None
    try:
        secret = synapse.registration_secret
        bot_id, _ = await register(http, secret, "civicbot")
        organiser_id, organiser_token = await register(http, secret, "organiser")
        began = time.perf_counter()
        people = await bounded(
            args.concurrency,
            [register(http, secret, f"resident{i}") for i in range(args.residents)],
        )
        rows.append(
            Row(f"register {args.residents} residents", f"{time.perf_counter() - began:.1f} s")
        )

        (workdir / "bot").mkdir()
        bot = start_bot(workdir / "bot", synapse.url, bot_id)
        await wait_for_log(workdir / "bot" / "bot.log", READY, bot)
        organiser = Resident(synapse.url, organiser_id, organiser_token)
        room = await organiser.create_room(
            name="Bench Street", invite=[bot_id], preset="public_chat"
        )
        organiser.mark()
        await organiser.wait_for(room, lambda e: "Hello" in e.get("content", {}).get("body", ""))
        began = time.perf_counter()
        await bounded(
            args.concurrency,
            [
                http.call("POST", f"/_matrix/client/v3/join/{quote(room)}", token, {})
                for _, token in people
            ],
        )
        rows.append(Row(f"{args.residents} residents join", f"{time.perf_counter() - began:.1f} s"))

        organiser.mark()
        await organiser.send_text(
            room,
            "!poll Which improvement first? | Benches | Trees | Lights | Bins | closes in 2 days",
        )
        start = await organiser.wait_for(
            room, lambda e: e.get("type") == START and e.get("sender") == bot_id, timeout=60
        )
        choices = [random.Random(i).choice(ANSWERS) for i in range(len(people))]

        async def vote(token: str, answer: str) -> None:
            content = {
                "m.relates_to": {"rel_type": "m.reference", "event_id": start["event_id"]},
                RESPONSE: {"answers": [answer]},
            }
            txn = uuid.uuid4().hex
            path = f"/_matrix/client/v3/rooms/{quote(room)}/send/{quote(RESPONSE)}/{txn}"
            await http.call("PUT", path, token, content)

        began = time.perf_counter()
        await bounded(
            args.concurrency, [vote(t, c) for (_, t), c in zip(people, choices, strict=True)]
        )
        voting = time.perf_counter() - began
        rows.append(
            Row(
                f"{args.residents} residents vote (≤ {args.concurrency} in flight)",
                f"{voting:.1f} s ({len(people) / voting:.0f} votes/s)",
                f"≤ {VOTE_WINDOW_S:.0f} s",
                "yes" if voting <= VOTE_WINDOW_S else "NO",
            )
        )

        # Ingestion: ask until the bot has read every vote (it answers each !poll show).
        began = time.perf_counter()
        while True:
            organiser.mark()
            await organiser.send_text(room, "!poll show P-1")
            shown = await organiser.wait_for(
                room,
                lambda e: (
                    e.get("sender") == bot_id and "P-1 (open)" in e["content"].get("body", "")
                ),
                timeout=60,
            )
            seen = re.search(r"(\d+) (?:people have|person has) voted", shown["content"]["body"])
            if seen and int(seen.group(1)) >= len(people):
                break
            await asyncio.sleep(0.2)
        rows.append(
            Row(
                "bot has read every vote (after the last was sent)",
                f"{time.perf_counter() - began:.2f} s",
            )
        )

        closes: list[float] = []
        organiser.mark()
        sent_at = time.perf_counter()
        close_id = await organiser.send_text(room, "!poll close P-1")
        results = await organiser.wait_for(
            room,
            lambda e: (
                e.get("sender") == bot_id and "Results of P-1" in e["content"].get("body", "")
            ),
            timeout=60,
        )
        felt = time.perf_counter() - sent_at
        close_event = next(
            e for e in await organiser.messages(room, 50) if e["event_id"] == close_id
        )
        server = (results["origin_server_ts"] - close_event["origin_server_ts"]) / 1000
        closes.append(server)
        rows.append(
            Row(
                "`!poll close` → results message (server timestamps)",
                f"{server:.2f} s",
                f"≤ {CLOSE_TARGET_S:.0f} s",
                "yes" if server <= CLOSE_TARGET_S else "NO",
            )
        )
        rows.append(Row("`!poll close` → results seen by the resident's sync", f"{felt:.2f} s"))

        body = results["content"]["body"]
        expected = {a: choices.count(a) for a in ANSWERS}
        correct = f"Turnout: {len(people)} people voted of {len(people) + 1} members" in body
        for number, answer in enumerate(ANSWERS, start=1):
            match = re.search(rf"^{number}\. \w+: \S+ (\d+) \(", body, re.M)
            correct = correct and match is not None and int(match.group(1)) == expected[answer]
        rows.append(
            Row(
                "every vote counted",
                f"{sum(expected.values())} sent, counts {'match' if correct else 'DIFFER'}",
                "all",
                "yes" if correct else "NO",
            )
        )
        if not correct:
            print(body, file=sys.stderr)
        met = voting <= VOTE_WINDOW_S and server <= CLOSE_TARGET_S
        return rows, met and correct
    finally:
        if organiser is not None:
            await organiser.close()
        await http.close()
        if bot is not None and bot.poll() is None:
            bot.send_signal(signal.SIGTERM)
            try:
                bot.wait(30)
            except subprocess.TimeoutExpired:
                bot.kill()
        synapse.stop()


# -- part 2: the tally ---------------------------------------------------------------------------
async def tally_in_process(args: argparse.Namespace, workdir: Path) -> tuple[list[Row], bool]:
    from civicbot_plugins.polls.migrations import MIGRATIONS
    from civicbot_plugins.polls.models import NewPoll
    from civicbot_plugins.polls.service import Option, PollKind, instant_runoff, tally_responses
    from civicbot_plugins.polls.store import PollStore

    from civicbot.storage.database import Database

    db = await Database.open(workdir / "tally.sqlite3")
    try:
        await db.migrate("polls", MIGRATIONS)
        store = PollStore(db, lambda text: text)  # the tally does not use the salt
        now = datetime(2026, 11, 23, tzinfo=UTC)
        poll, _ = await store.create(
            NewPoll(
                room_id="!bench:test",
                source_event_id="$bench",
                creator="@organiser:test",
                question="Which improvement first?",
                kind=PollKind.SINGLE,
                max_selections=1,
                options=[Option(a, a) for a in ANSWERS],
                secret=False,
                hidden=False,
                timezone="Europe/London",
                created_at=now,
                closes_at=now + timedelta(days=7),
                thread_root=None,
            )
        )
        rng = random.Random(42)
        voters = args.responses // 2
        rows_in: list[tuple[Any, ...]] = []
        final: dict[str, object] = {}
        for n in range(args.responses):
            voter = f"@resident{n % voters}:test"
            ts = 1_000_000 + n
            roll = rng.random()
            answers: object = [rng.choice(ANSWERS)]
            if roll < 0.01:
                answers = []  # withdrawn
            elif roll < 0.02:
                answers = ["9"]  # spoiled
            final[voter] = answers
            rows_in.append((f"$r{n}", poll.id, voter, json.dumps(answers), ts, "button", ""))
        await db.executemany(
            "INSERT INTO polls_responses (event_id, poll_id, voter, answers, ts, via, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows_in,
        )
        expected = dict.fromkeys(ANSWERS, 0)
        for answers in final.values():
            if isinstance(answers, list) and answers and answers[0] in expected:
                expected[answers[0]] += 1

        loads, counts, totals = [], [], []
        tally = None
        for _ in range(args.repeats):
            began = time.perf_counter()
            responses = await store.responses(poll.id)
            loaded = time.perf_counter()
            tally = tally_responses(responses, ANSWERS, 1)
            done = time.perf_counter()
            loads.append(loaded - began)
            counts.append(done - loaded)
            totals.append(done - began)
        assert tally is not None
        correct = tally.counts == expected and len(responses) == args.responses

        ballots = [rng.sample(ANSWERS, k=rng.randint(1, 4)) for _ in range(args.responses)]
        began = time.perf_counter()
        runoff = instant_runoff(ballots, ANSWERS, seed=1)
        irv = time.perf_counter() - began

        total = statistics.median(totals)
        return [
            Row(
                f"load {args.responses:,} stored responses (SQLite via aiosqlite)",
                f"{statistics.median(loads) * 1000:.0f} ms",
            ),
            Row(
                "count them by the client rules (pure)",
                f"{statistics.median(counts) * 1000:.0f} ms",
            ),
            Row(
                f"tally of {args.responses:,} stored responses"
                f" (load + count, median of {args.repeats})",
                f"{total * 1000:.0f} ms",
                f"≤ {TALLY_TARGET_S * 1000:.0f} ms",
                "yes" if total <= TALLY_TARGET_S else "NO",
            ),
            Row(
                "tally correct",
                f"{tally.voters:,} voters, {tally.spoiled:,} spoiled,"
                f" counts {'match' if correct else 'DIFFER'}",
                "",
                "yes" if correct else "NO",
            ),
            Row(
                f"instant runoff of {args.responses:,} ranked ballots",
                f"{irv * 1000:.0f} ms ({len(runoff.rounds)} rounds)",
            ),
        ], correct and total <= TALLY_TARGET_S
    finally:
        await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--responses", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-synapse", action="store_true", help="only the in-process tally")
    parser.add_argument("--keep", type=Path, help="keep Synapse and the bot's files here")
    args = parser.parse_args()

    async def run(workdir: Path) -> tuple[list[Row], bool, bool]:
        rows, ok, counted = [], True, True
        if not args.skip_synapse:
            got, fine = await through_synapse(args, workdir)
            rows += got
            ok = ok and fine
            counted = counted and all(r.met != "NO" for r in got if r.what == "every vote counted")
        got, fine = await tally_in_process(args, workdir)
        rows += got
        counted = counted and all(r.met != "NO" for r in got if r.what == "tally correct")
        return rows, ok and fine, counted

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        rows, ok, counted = asyncio.run(run(args.keep))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-polls-") as tmp:
            rows, ok, counted = asyncio.run(run(Path(tmp)))
    print("| measurement | result | target | met |\n|---|---:|---:|:-:|")
    for row in rows:
        print(f"| {row.what} | {row.value} | {row.target} | {row.met} |")
    if not counted:
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
