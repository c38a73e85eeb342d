"""``!ping`` round trip through a real Synapse: civicbot against a bare matrix-nio echo client.

Target (foundation issue): the median time from a resident's ``!ping`` to the bot's reply is
no more than 1.2x that of a bare matrix-nio echo client measured in the same run.

Everything runs on loopback: a private Synapse started here, the real bot as a
``python -m civicbot run`` child process, and the echo client as another child process (this
file with ``echo-client``), so each bot has an interpreter and event loop of its own. One
resident (:class:`civicbot.testing.client.Resident`, raw HTTP) talks to both, each in its own
room, alternating which goes first every round, so both see the same homeserver, the same
resident and the same sync overhead.

Two numbers per bot and round:

* round trip: from just before the resident's send to the moment its ``/sync`` delivers the
  reply (``time.perf_counter``), what a person feels;
* server: the reply's ``origin_server_ts`` minus the ping's, i.e. the bot's own part (sync
  wake-up, handling, sending) without the resident's sync, in whole milliseconds.

With ``--encryption both`` (the default) this is done twice in the same run: in unencrypted
rooms against the plain echo client, then in encrypted rooms (the resident on nio with
encryption, :class:`civicbot.testing.encrypted.EncryptedResident`) against a second echo
client with encryption on; each has its own ratio and the same target. civicbot runs with its
default ``matrix.encryption = true`` in both.

    python bench/bench_ping_latency.py [--rounds N] [--warmup N] [--gap SECONDS]
        [--encryption off|on|both] [--access-log] [--profile FILE]

``--access-log`` counts the HTTP requests each bot makes per ``!ping`` from Synapse's access
log and times each bot's own part (from Synapse answering its sync to its reply arriving).
``--profile FILE`` runs civicbot under cProfile (slower: the ratio is then meaningless) and
prints where its time went. Exits 1 when the ratio is above the target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGET_RATIO = 1.2
PASSWORD = "a bench password"
READY = "listening for events"


# -- the bare matrix-nio echo client (runs in its own process) ---------------------------------
async def run_echo_client(
    homeserver: str, user_id: str, password: str, store: str | None = None
) -> None:
    """The smallest honest nio bot: sync_forever, one callback, answer ``!ping`` with a notice
    replying to it. Joins rooms it is invited to and says hello, as civicbot does. With
    ``store`` it has encryption on (its keys there), as a bot in encrypted rooms must."""
    from nio import (
        AsyncClient,
        AsyncClientConfig,
        InviteMemberEvent,
        LoginResponse,
        MatrixRoom,
        RoomMessageText,
        SyncResponse,
    )

    if store:
        os.makedirs(store, exist_ok=True)
    client = AsyncClient(
        homeserver,
        user_id,
        store_path=store or "",
        config=AsyncClientConfig(
            encryption_enabled=store is not None,
            store_sync_tokens=False,
            pickle_key="nio echo bench",
        ),
    )
    login = await client.login(password, device_name="nio-echo")
    if not isinstance(login, LoginResponse):
        raise SystemExit(f"echo client: login failed: {login}")

    async def on_message(room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender == client.user_id or event.body.strip() != "!ping":
            return
        await client.room_send(
            room.room_id,
            "m.room.message",
            {
                "msgtype": "m.notice",
                "body": "pong",
                "m.mentions": {},
                "m.relates_to": {"m.in_reply_to": {"event_id": event.event_id}},
            },
            ignore_unverified_devices=True,
        )

    async def on_invite(room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key != client.user_id or event.membership != "invite":
            return
        await client.join(room.room_id)
        if client.olm is None:  # (nio can't send to an encrypted room before a sync has it)
            await client.room_send(
                room.room_id,
                "m.room.message",
                {"msgtype": "m.notice", "body": "Hello from the echo client", "m.mentions": {}},
            )

    ready = False

    async def on_sync(_: SyncResponse) -> None:
        nonlocal ready
        if not ready:
            ready = True
            print(READY, flush=True)

    client.add_event_callback(on_message, RoomMessageText)  # type: ignore[arg-type]
    client.add_event_callback(on_invite, InviteMemberEvent)  # type: ignore[arg-type]
    client.add_response_callback(on_sync, SyncResponse)  # type: ignore[arg-type]
    try:
        await client.sync_forever(timeout=30_000, full_state=True)
    finally:
        await client.close()


# -- the homeserver and the two bots ---------------------------------------------------------
def make_synapse(directory: Path, access_log: bool) -> Any:
    from civicbot.testing.synapse import LocalSynapse

    class BenchSynapse(LocalSynapse):
        """Optionally logs every request (synapse.access at INFO) so requests can be counted."""

        def _write_config(self) -> None:
            super()._write_config()
            if access_log:
                path = self.base_dir / "log_config.yaml"
                path.write_text(
                    path.read_text()
                    + "loggers:\n  synapse.access:\n    level: INFO\n"
                    + "  synapse.access.http:\n    level: INFO\n"
                )

    return BenchSynapse(directory)


@dataclass
class Child:
    """A bot in a child process; ``start`` returns once it logs that it is listening."""

    name: str
    argv: list[str]
    log_path: Path
    cwd: Path
    process: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 60) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd
            )
        deadline = time.monotonic() + timeout
        while READY not in self.log_text():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not start:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.05)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process has used so far (Linux /proc only)."""
        if self.process is None:
            return None
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# Operator settings that switch civicbot's rate limits off (0 = off), in the core's [limits]:
# one resident sending a !ping every few hundred milliseconds is a flood by those limits.
LIFTED_LIMITS = {"person_burst": 0, "room_burst": 0, "everywhere_burst": 0, "sends_per_second": 0}


def lifted_limits() -> dict[str, dict[str, Any]]:
    """The config tables that switch the core's flood limits and send pacing off."""
    return {"limits": dict(LIFTED_LIMITS)}


def civicbot_child(
    directory: Path,
    homeserver: str,
    user_id: str,
    profile: Path | None,
    plugin_tables: dict[str, dict[str, Any]],
) -> Child:
    config = directory / "config.toml"
    lines = [
        "[matrix]",
        f"homeserver = {json.dumps(homeserver)}",
        f"user_id = {json.dumps(user_id)}",
        f"password = {json.dumps(PASSWORD)}",
        'device_name = "civicbot-bench"',
        "",
        "[bot]",
        f"data_dir = {json.dumps(str(directory / 'data'))}",
        'log_level = "INFO"',
    ]
    for section, table in plugin_tables.items():
        lines += ["", f"[{section}]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    config.write_text("\n".join(lines) + "\n")
    runner = ["-m", "cProfile", "-o", str(profile)] if profile else []
    argv = [sys.executable, *runner, "-m", "civicbot", "run", "--config", str(config)]
    return Child("civicbot", argv, directory / "bot.log", directory)


def echo_child(directory: Path, homeserver: str, user_id: str, encrypted: bool) -> Child:
    store = ["--store", str(directory / "store")] if encrypted else []
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "echo-client",
        "--homeserver",
        homeserver,
        "--user-id",
        user_id,
        "--password",
        PASSWORD,
        *store,
    ]
    name = "nio echo (e2e)" if encrypted else "nio echo"
    return Child(name, argv, directory / "echo.log", directory)


# -- measuring ---------------------------------------------------------------------------------
@dataclass
class Samples:
    name: str
    room_id: str
    bot_id: str
    round_trip_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)  # wall-clock, for the log
    cpu_ms_per_ping: float | None = None  # the bot process's user + system CPU time


def reply_to(bot_id: str, event_id: str) -> Any:
    def check(event: dict[str, Any]) -> bool:
        content = event.get("content") or {}
        relation = (content.get("m.relates_to") or {}).get("m.in_reply_to") or {}
        return (
            event.get("sender") == bot_id
            and content.get("msgtype") == "m.notice"
            and relation.get("event_id") == event_id
        )

    return check


async def one_ping(resident: Any, target: Samples, record: bool) -> None:
    resident.mark()
    wall = time.time()
    start = time.perf_counter()
    ping_id = await resident.send_text(target.room_id, "!ping")
    try:
        reply = await resident.wait_for(
            target.room_id, reply_to(target.bot_id, ping_id), timeout=30
        )
    except TimeoutError:
        raise SystemExit(
            f"FAIL: {target.name} did not answer a !ping within 30 s. If civicbot now rate-limits"
            " residents (flood guard) or paces its sends, lift those limits in the bench config"
            " or raise --gap."
        ) from None
    elapsed = time.perf_counter() - start
    ping = await resident.wait_for(target.room_id, lambda e: e.get("event_id") == ping_id)
    if record:
        target.round_trip_ms.append(elapsed * 1000)
        target.server_ms.append(reply["origin_server_ts"] - ping["origin_server_ts"])
        target.windows.append((wall, time.time()))


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p90": statistics.quantiles(ordered, n=10, method="inclusive")[8],
        "min": ordered[0],
        "max": ordered[-1],
    }


ACCESS_LINE = re.compile(
    r"^(?P<date>\S+ \S+),(?P<ms>\d+) INFO synapse\.access\.http\.\d+: .*?\{(?P<user>@[^}]+)\}"
    r" Processed request: (?P<secs>[\d.]+)sec.*?\"(?P<method>[A-Z]+) (?P<path>\S+) "
)


@dataclass
class AccessStats:
    """What Synapse's access log says about one bot during the measured rounds."""

    requests: Counter[str] = field(default_factory=Counter)  # by method and endpoint
    think_ms: list[float] = field(default_factory=list)  # end of the sync -> start of the reply


def access_stats(log_text: str, target: Samples) -> AccessStats:
    stats = AccessStats()
    sync_done: float | None = None
    for line in log_text.splitlines():
        match = ACCESS_LINE.match(line)
        if not match or match["user"] != target.bot_id:
            continue
        # Synapse logs a request when it has answered, and says how long it took.
        done = time.mktime(time.strptime(match["date"], "%Y-%m-%d %H:%M:%S"))
        done += int(match["ms"]) / 1000
        path = re.sub(r"/(![^/]+|%21[^/]+)", "/{room}", match["path"].split("?")[0])
        path = re.sub(r"/(send/[^/]+)/[^/]+$", r"/\1/{txn}", path)
        measured = any(lo - 0.001 <= done <= hi + 0.5 for lo, hi in target.windows)
        if measured:
            stats.requests[f"{match['method']} {path}"] += 1
        if path.endswith("/sync"):
            sync_done = done
        elif "/send/" in path and sync_done is not None:
            if measured:
                started = done - float(match["secs"])
                stats.think_ms.append(max(started - sync_done, 0.0) * 1000)
            sync_done = None
    return stats


async def measure(args: argparse.Namespace, base: Path) -> int:
    from civicbot.testing.client import Resident
    from civicbot.testing.encrypted import EncryptedResident

    synapse = make_synapse(base / "synapse", args.access_log)
    synapse.start()
    children: list[Child] = []
    phases: list[tuple[str, list[Samples]]] = []
    try:
        bot_id = synapse.register("civicbot", PASSWORD)
        resident_id = synapse.register("resident", PASSWORD)
        tables = lifted_limits() if args.rate_limits == "off" else {}
        lifted = [f"{section}.{key}" for section, table in tables.items() for key in table]
        args.limits_note = (
            f"civicbot rate limits off ({', '.join(lifted) or 'none configurable'})"
            if args.rate_limits == "off"
            else "civicbot rate limits at their defaults"
        )
        (base / "civicbot").mkdir()
        civicbot = civicbot_child(base / "civicbot", synapse.url, bot_id, args.profile, tables)
        children = [civicbot]
        echoes: dict[bool, tuple[str, Child]] = {}
        for encrypted in modes(args):
            name = "echo-e2e" if encrypted else "echo"
            echo_id = synapse.register(name, PASSWORD)
            (base / name).mkdir()
            echoes[encrypted] = (echo_id, echo_child(base / name, synapse.url, echo_id, encrypted))
            children.append(echoes[encrypted][1])
        await asyncio.gather(*(child.start() for child in children))

        for encrypted in modes(args):
            echo_id, echo = echoes[encrypted]
            if encrypted:
                resident: Any = await EncryptedResident.login(
                    synapse.url, resident_id, PASSWORD, base / "resident-store"
                )
                resident.sync_before_send = False  # not in the measured round trip
            else:
                resident = await Resident.login(synapse.url, resident_id, PASSWORD)
            try:
                pairs = [("civicbot", bot_id, civicbot), (echo.name, echo_id, echo)]
                phases.append(("encrypted" if encrypted else "unencrypted", []))
                await run_rounds(args, resident, pairs, phases[-1][1])
            finally:
                await resident.close()
    finally:
        for child in children:
            child.stop()
        synapse.stop()

    log = synapse.log_path.read_text(errors="replace") if args.access_log else ""
    codes = []
    for label, targets in phases:
        access = {t.name: access_stats(log, t) for t in targets} if args.access_log else {}
        codes.append(report(args, label, targets, access))
    return max(codes)


def modes(args: argparse.Namespace) -> list[bool]:
    """Which rooms to measure in: unencrypted, encrypted, or both (each its own ratio)."""
    return {"off": [False], "on": [True], "both": [False, True]}[args.encryption]


async def run_rounds(
    args: argparse.Namespace,
    resident: Any,
    pairs: list[tuple[str, str, Child]],
    targets: list[Samples],
) -> None:
    """A room per bot (encrypted when the resident is), then the alternating pings."""
    for name, user, _ in pairs:
        resident.mark()
        room = await resident.create_room(name=f"bench {name}", invite=[user])
        await resident.wait_for(
            room,
            lambda e, u=user: (
                e.get("type") == "m.room.member"
                and e.get("state_key") == u
                and (e.get("content") or {}).get("membership") == "join"
            ),
            timeout=30,
        )
        targets.append(Samples(name, room, user))
    children = [child for _, _, child in pairs]
    cpu_before: list[float | None] = []
    for i in range(args.warmup + args.rounds):
        if i == args.warmup:
            cpu_before = [child.cpu_seconds() for child in children]
        order = targets if i % 2 == 0 else targets[::-1]
        for target in order:
            await one_ping(resident, target, record=i >= args.warmup)
            await asyncio.sleep(args.gap)
    for target, child, before in zip(targets, children, cpu_before, strict=True):
        after = child.cpu_seconds()
        if before is not None and after is not None:
            target.cpu_ms_per_ping = (after - before) * 1000 / args.rounds


def report(
    args: argparse.Namespace, label: str, targets: list[Samples], access: dict[str, AccessStats]
) -> int:
    civicbot, echo = targets
    print()
    when = time.strftime("%F %R %Z")
    print(f"civicbot !ping latency in {label} rooms against a bare matrix-nio echo client, {when}")
    print(
        f"CPython {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.rounds} rounds each after "
        f"{args.warmup} warm-up, alternating, {args.gap * 1000:.0f} ms apart; {args.limits_note}"
    )
    print()
    print("| bot | round trip median ms | p90 | min | server median ms | p90 | bot CPU ms/ping |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    stats = {}
    for t in targets:
        rt, server = summary(t.round_trip_ms), summary(t.server_ms)
        cpu = "n/a" if t.cpu_ms_per_ping is None else f"{t.cpu_ms_per_ping:.1f}"
        stats[t.name] = (rt, server)
        print(
            f"| {t.name} | {rt['median']:.1f} | {rt['p90']:.1f} | {rt['min']:.1f} | "
            f"{server['median']:.0f} | {server['p90']:.0f} | {cpu} |"
        )
    ratio = stats[civicbot.name][0]["median"] / stats[echo.name][0]["median"]
    server_ratio = stats[civicbot.name][1]["median"] / max(stats[echo.name][1]["median"], 1)
    print()
    print(
        f"{label}: ratio civicbot / {echo.name} (round-trip medians): {ratio:.2f}x "
        f"(target <= {TARGET_RATIO}x); server-side medians: {server_ratio:.2f}x"
    )
    for name, stats in access.items():
        per_ping = {k: v / args.rounds for k, v in sorted(stats.requests.items())}
        shown = ", ".join(f"{k}: {v:.2f}" for k, v in per_ping.items())
        print(f"requests per !ping, {name}: {sum(per_ping.values()):.2f} ({shown})")
        if stats.think_ms:
            think = summary(stats.think_ms)
            print(
                f"  {name} think time (sync answered -> reply request arrives): median "
                f"{think['median']:.0f} ms, p90 {think['p90']:.0f} ms (1 ms log resolution)"
            )
    if args.profile:
        print_profile(args.profile)
        print("(profiled run: cProfile slows civicbot, so the ratio above is not a result)")
        return 0
    if ratio > TARGET_RATIO:
        print(f"FAIL: {ratio:.2f}x is above the {TARGET_RATIO}x target", file=sys.stderr)
        return 1
    print("Target met.")
    return 0


def print_profile(path: Path) -> None:
    import pstats

    print()
    print(f"civicbot profile ({path}): the sync loop and dispatch, by cumulative time")
    hot = (
        r"(civicbot/.*\.py:\d+\((?!<module>)"
        r"|nio/client/async_client\.py:\d+\((sync|room_send|_send|receive_response)\))"
    )
    pstats.Stats(str(path)).sort_stats("cumulative").print_stats(hot, 30)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    echo = sub.add_parser("echo-client", help="(internal) run the bare nio echo client")
    echo.add_argument("--homeserver", required=True)
    echo.add_argument("--user-id", required=True)
    echo.add_argument("--password", required=True)
    echo.add_argument("--store", help="with encryption: where the echo client keeps its keys")
    parser.add_argument("--rounds", type=int, default=50, help="measured pings per bot")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured pings per bot first")
    parser.add_argument(
        "--gap",
        type=float,
        default=0.1,
        help="seconds between pings; keep civicbot under its per-room send pacing (5/s)",
    )
    parser.add_argument(
        "--rate-limits",
        choices=("off", "default"),
        default="off",
        help="civicbot's own flood limits and send pacing, where configurable (default: off)",
    )
    parser.add_argument(
        "--encryption",
        choices=("off", "on", "both"),
        default="both",
        help="ping in unencrypted rooms, encrypted rooms (each bot with encryption), or both",
    )
    parser.add_argument("--access-log", action="store_true", help="count requests per !ping")
    parser.add_argument("--profile", metavar="FILE", help="run civicbot under cProfile")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep the logs")
    args = parser.parse_args(argv)
    if args.mode != "echo-client" and args.rounds < 2:
        parser.error("--rounds must be at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.profile = Path(args.profile).resolve() if args.profile else None
    if args.mode == "echo-client":
        try:
            asyncio.run(run_echo_client(args.homeserver, args.user_id, args.password, args.store))
        except KeyboardInterrupt:
            pass
        return 0
    if args.keep:
        base = Path(args.keep).resolve()
        base.mkdir(parents=True, exist_ok=False)
        return asyncio.run(measure(args, base))
    with tempfile.TemporaryDirectory(prefix="civicbot-bench-") as tmp:
        return asyncio.run(measure(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
