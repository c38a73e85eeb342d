"""A city's start-up: civicbot in thousands of rooms, first start and restart, against a bare
nio bot in the same run.

Targets (issue 23): first start in 2,000 rooms at no more CPU than the bare bot's (1.0x), the
longest event-loop stall at most 0.25 s, and a restart to the first answer within 1.5x the bare
bot's.

Everything runs on loopback: a private Synapse started here; ``--rooms`` rooms, each with the
civicbot account and the bare bot's account joined (through the API, before either bot runs);
the real bot as ``python -m civicbot run`` (default settings) and the bare matrix-nio echo bot of
``bench_ping_latency.py`` (``sync_forever`` with a full-state first sync), each a child process
run through this file's ``stall-child`` wrapper, which adds an event-loop watchdog (a 10 ms
ticker that logs how late it woke) and nothing else. The bots run one at a time, so each has
the machine's cores to itself:

* first start: from the process starting with an empty data folder until it answers a
  ``!ping`` sent once it says it is listening: wall time, CPU (user + system), peak RSS, and
  the longest loop stall;
* restart (SIGTERM, then start again with its saved session): from the process starting to its
  answer to a ``!ping`` sent at that moment (the bare bot, which keeps nothing, starts afresh).

    python bench/bench_city.py [--rooms 2000] [--keep DIR] [--city DIR]

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import platform
import re
import runpy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_ping_latency as ping_bench

CPU_RATIO_TARGET = 1.0
STALL_TARGET_S = 0.25
RESTART_RATIO_TARGET = 1.5
STALL_LINE = re.compile(r"^LOOP-STALL-MS (\d+)$", re.M)


# -- the wrapper each bot runs in (its own process) -------------------------------------------
def stall_child(argv: list[str]) -> None:
    """Run ``argv`` (``-m module …`` or ``script …``) with a loop watchdog in ``asyncio.run``."""
    real_run = asyncio.run

    async def watchdog() -> None:
        worst = 0.0
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            late = loop.time() - before - 0.01
            if late > worst and late > 0.02:
                worst = late
                print(f"LOOP-STALL-MS {int(late * 1000)}", flush=True)

    def run(main: Any, **kwargs: Any) -> Any:
        async def watched() -> Any:
            dog = asyncio.ensure_future(watchdog())
            try:
                return await main
            finally:
                dog.cancel()

        return real_run(watched(), **kwargs)

    asyncio.run = run  # type: ignore[assignment]
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        runpy.run_path(argv[0], run_name="__main__")


def watched(child: Any) -> Any:
    """The same child, run through the watchdog wrapper."""
    python, *rest = child.argv
    child.argv = [python, str(Path(__file__).resolve()), "stall-child", *rest]
    return child


def peak_rss_mib(child: Any) -> float:
    try:
        status = Path(f"/proc/{child.process.pid}/status").read_text()
    except OSError:
        return float("nan")
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else float("nan")


def longest_stall_s(text: str) -> float:
    return max((int(ms) for ms in STALL_LINE.findall(text)), default=0) / 1000


# -- the city ----------------------------------------------------------------------------------
async def build_city(synapse: Any, moderator: Any, bots: list[Any], rooms: int) -> list[str]:
    made: list[str] = []
    ids = [bot.user_id for bot in bots]

    async def one(n: int) -> str:
        room = await moderator.create_room(name=f"Street {n}", invite=ids)
        for bot in bots:
            await bot.join(room)
        return room

    for start in range(0, rooms, 20):
        made += await asyncio.gather(*(one(n) for n in range(start, min(rooms, start + 20))))
        if start % 200 == 0:
            print(f"  {len(made)} rooms", file=sys.stderr)
    return made


async def answered(moderator: Any, room: str, bot_id: str, ping: str, timeout: float) -> int:
    """The origin_server_ts of ``bot_id``'s reply to ``ping``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in await moderator.messages(room, limit=50):
            content = event.get("content") or {}
            relation = (content.get("m.relates_to") or {}).get("m.in_reply_to") or {}
            if event.get("sender") == bot_id and relation.get("event_id") == ping:
                return int(event["origin_server_ts"])
        await asyncio.sleep(0.1)
    raise SystemExit(f"FAIL: {bot_id} did not answer within {timeout:.0f} s")


async def first_start(child: Any, moderator: Any, room: str, bot_id: str) -> dict[str, float]:
    spawned = time.time()
    await child.start(timeout=1200)
    ping = await moderator.send_text(room, "!ping")
    reply_ts = await answered(moderator, room, bot_id, ping, timeout=300)
    return {
        "wall_s": reply_ts / 1000 - spawned,
        "cpu_s": child.cpu_seconds() or float("nan"),
        "rss_mib": peak_rss_mib(child),
        "stall_s": longest_stall_s(child.log_text()),
    }


async def restart(child: Any, moderator: Any, room: str, bot_id: str) -> dict[str, float]:
    child.stop()
    offset = len(child.log_text())
    spawned = time.time()
    starting = asyncio.create_task(child.start(timeout=1200))
    ping = await moderator.send_text(room, "!ping")
    reply_ts = await answered(moderator, room, bot_id, ping, timeout=300)
    await starting
    return {
        "to_answer_s": reply_ts / 1000 - spawned,
        "cpu_s": child.cpu_seconds() or float("nan"),
        "stall_s": longest_stall_s(child.log_text()[offset:]),
    }


def compile_sources() -> None:
    """Byte-compile civicbot and its plugins, as installing them does (pip, the Dockerfile):
    run from a checkout where ``PYTHONDONTWRITEBYTECODE`` is set, every start of the bot would
    compile them again (0.35 s of CPU), which no installed bot does. nio is installed already."""
    import civicbot_plugins

    import civicbot

    for package in (civicbot, civicbot_plugins):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)


async def measure(args: argparse.Namespace, base: Path) -> int:
    from civicbot.testing.client import Resident

    compile_sources()
    city = args.city or base
    synapse = ping_bench.make_synapse(city / "synapse", access_log=False)
    synapse.start()
    children: list[Any] = []
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        password = ping_bench.PASSWORD
        bot_id = synapse.register("civicbot", password)
        echo_id = synapse.register("echo", password)
        moderator = await Resident.login(
            synapse.url, synapse.register("moderator", password), password
        )
        built = city / "rooms.json"
        rooms = json.loads(built.read_text()) if built.exists() else []
        if len(rooms) == args.rooms:
            print(f"the city of {args.rooms} rooms in {city}, built before", file=sys.stderr)
        else:
            accounts = [await Resident.login(synapse.url, w, password) for w in (bot_id, echo_id)]
            print(f"building a city of {args.rooms} rooms…", file=sys.stderr)
            rooms = await build_city(synapse, moderator, accounts, args.rooms)
            for account in accounts:
                await account.close()
            built.write_text(json.dumps(rooms))
        (base / "civicbot").mkdir()
        (base / "echo").mkdir()
        civicbot = watched(
            ping_bench.civicbot_child(base / "civicbot", synapse.url, bot_id, None, {})
        )
        echo = watched(ping_bench.echo_child(base / "echo", synapse.url, echo_id, False))
        children = [civicbot, echo]
        for name, child, user in (("civicbot", civicbot, bot_id), ("bare nio bot", echo, echo_id)):
            print(f"{name}: first start…", file=sys.stderr)
            first = await first_start(child, moderator, rooms[0], user)
            print(f"{name}: restart…", file=sys.stderr)
            again = await restart(child, moderator, rooms[0], user)
            child.stop()
            results[name] = {"first": first, "restart": again}
        await moderator.close()
    finally:
        for child in children:
            child.stop()
        synapse.stop()
    return report(args, results)


def report(args: argparse.Namespace, results: dict[str, dict[str, dict[str, float]]]) -> int:
    print()
    print(f"civicbot city start-up benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} "
        f"cores, load average {os.getloadavg()[0]:.1f}; {args.rooms} rooms, both bots in each"
    )
    print()
    print(
        "| bot | first start: to first answer s | CPU s | peak RSS MiB | longest stall s "
        "| restart: to first answer s | longest stall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, phases in results.items():
        f, r = phases["first"], phases["restart"]
        print(
            f"| {name} | {f['wall_s']:.2f} | {f['cpu_s']:.2f} | {f['rss_mib']:.0f} | "
            f"{f['stall_s']:.2f} | {r['to_answer_s']:.2f} | {r['stall_s']:.2f} |"
        )
    print()
    civic, bare = results["civicbot"], results["bare nio bot"]
    cpu_ratio = civic["first"]["cpu_s"] / bare["first"]["cpu_s"]
    restart_ratio = civic["restart"]["to_answer_s"] / bare["restart"]["to_answer_s"]
    stall = max(civic["first"]["stall_s"], civic["restart"]["stall_s"])
    print(f"first-start CPU, civicbot / bare bot: {cpu_ratio:.2f} (target <= {CPU_RATIO_TARGET})")
    print(f"civicbot's longest loop stall: {stall:.2f} s (target <= {STALL_TARGET_S} s)")
    print(
        f"restart to first answer, civicbot / bare bot: {restart_ratio:.2f} "
        f"(target <= {RESTART_RATIO_TARGET})"
    )
    if (
        cpu_ratio > CPU_RATIO_TARGET
        or stall > STALL_TARGET_S
        or restart_ratio > RESTART_RATIO_TARGET
    ):
        print("FAIL: a target was missed", file=sys.stderr)
        return 1
    print("All targets met.")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=2000, help="rooms both bots are in")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep the logs")
    parser.add_argument(
        "--city",
        metavar="DIR",
        help="keep the homeserver and its rooms in DIR and use them again in later runs "
        "(building 2,000 rooms takes minutes); each run still starts both bots afresh",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stall-child"]:
        stall_child(argv[1:])
        return 0
    args = parse_args(argv)
    if args.city:
        args.city = Path(args.city).resolve()
        args.city.mkdir(parents=True, exist_ok=True)
    if args.keep:
        base = Path(args.keep).resolve()
        base.mkdir(parents=True, exist_ok=False)
        return asyncio.run(measure(args, base))
    with tempfile.TemporaryDirectory(prefix="civicbot-bench-") as tmp:
        return asyncio.run(measure(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
