"""The real-homeserver test kit as a pytest plugin (registered under ``pytest11``, so it is
active wherever civicbot and pytest-asyncio are installed): a Synapse on loopback per test
session (per xdist worker), residents speaking raw client-server HTTP, and the bot as a real
``civicbot run`` subprocess whose clock the test moves.

Fixtures: ``synapse``, ``residents``, ``encrypted_residents``, ``bots`` (``await bots(**settings)``)
and ``shared_bot`` (one per module, for tests that neither restart it nor change its settings).
Helpers to import: :class:`BotProcess`, :func:`room_with_bot`, :func:`encrypted_room`,
:func:`is_notice_from`, :func:`is_for`, :func:`reply_target`, :func:`unique`. A project adds
its own plugins to every bot by overriding the ``civicbot_bot_options`` fixture::

    @pytest.fixture(scope="session")
    def civicbot_bot_options():
        return {"extra_plugins": ["mypkg.testing:ProbePlugin"], "pythonpath": ["tests/support"]}
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from civicbot.scheduling.clock import OFFSET_FILE_ENV
from civicbot.testing.client import Resident
from civicbot.testing.encrypted import EncryptedResident
from civicbot.testing.synapse import LocalSynapse

async_fixture: Any
try:  # async fixtures that work in pytest-asyncio's strict mode as in its auto mode
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # the kit then offers only its sync fixtures
    async_fixture = None

PASSWORD = "a fine test password"
BOT_READY = "listening for events"
BOT_CAUGHT_UP = "caught up with what came while the bot was away"


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSynapse]:
    """One Synapse for the whole run (each xdist worker its own): starting one costs about
    two seconds."""
    server = LocalSynapse(Path(tmp_path_factory.mktemp("synapse")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def civicbot_bot_options() -> dict[str, Any]:
    """Keyword arguments every :class:`BotProcess` of the fixtures gets: ``extra_plugins``
    (``"module:Class"``, loaded as ``bot.extra_plugins``) and ``pythonpath`` (folders they are
    imported from). Override it in a ``conftest.py``."""
    return {}


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def _residents(synapse: LocalSynapse) -> AsyncIterator[Callable[[str], Awaitable[Resident]]]:
    """``await residents("ann")`` registers a fresh user and logs them in."""
    made: list[Resident] = []

    async def make(name: str) -> Resident:
        user_id = synapse.register(unique(name), PASSWORD)
        resident = await Resident.login(synapse.url, user_id, PASSWORD)
        made.append(resident)
        return resident

    yield make
    for resident in made:
        await resident.close()


def _toml_value(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value)  # JSON strings, numbers, booleans and lists are valid TOML


def write_config(path: Path, tables: dict[str, dict[str, Any]]) -> None:
    lines = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines))


class BotProcess:
    """``civicbot run`` in a child process, so tests can SIGTERM or SIGKILL it for real.

    Its clock is the test's to move (:meth:`move_clock`), never waited for: the process reads
    an offset from ``clock-offset`` in its directory at start and again on SIGUSR1."""

    def __init__(
        self,
        synapse: LocalSynapse,
        directory: Path,
        user_id: str,
        bot: dict[str, Any] | None = None,
        plugins: dict[str, dict[str, Any]] | None = None,
        env: dict[str, str] | None = None,
        limits: dict[str, Any] | None = None,
        web: dict[str, Any] | None = None,
        extra_plugins: list[str] | None = None,
        pythonpath: list[str] | None = None,
    ):
        self.synapse = synapse
        self.directory = directory
        self.user_id = user_id
        self.config_path = directory / "config.toml"
        self.log_path = directory / "bot.log"
        self.env = env or {}
        self.pythonpath = [str(path) for path in pythonpath or []]
        self.clock_offset = timedelta(0)
        self.offset_path = directory / "clock-offset"
        self.process: subprocess.Popen[bytes] | None = None
        tables: dict[str, dict[str, Any]] = {
            "matrix": {"homeserver": synapse.url, "user_id": user_id, "password": PASSWORD},
            "bot": {
                "data_dir": directory / "data",
                "log_level": "INFO",
                "extra_plugins": list(extra_plugins or []),
                **(bot or {}),
            },
        }
        if limits:
            tables["limits"] = limits
        if web:
            tables["web"] = web
        for name, values in (plugins or {}).items():
            tables[f"plugins.{name}"] = values
        write_config(self.config_path, tables)
        self.starts = 0
        self._started_at = 0  # where the log of the latest start begins

    async def start(self, timeout: float = 90, env: dict[str, str] | None = None) -> None:
        """Start ``civicbot run`` and wait until it listens. The bound is generous: on a busy
        machine the database's fsyncs alone took 30 s (a start is about 2 s when idle)."""
        environ = {
            **os.environ,
            **self.env,
            **(env or {}),
            OFFSET_FILE_ENV: str(self.offset_path),
            "PYTHONPATH": os.pathsep.join([*self.pythonpath, os.environ.get("PYTHONPATH", "")]),
        }
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._started_at = offset
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "civicbot", "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environ,
            cwd=self.directory,
        )
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while BOT_READY not in self.log_text()[offset:]:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the bot exited with {self.process.returncode}:\n{self.log_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"the bot did not start:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.05)

    async def caught_up(self, timeout: float = 60) -> None:
        """Wait until the bot, since its last start, has handled what came while it was away
        and every plugin has done its catching up (overdue polls closed, voters whose secret
        ballot a crash lost asked again)."""
        deadline = time.monotonic() + timeout
        while BOT_CAUGHT_UP not in self.log_text()[self._started_at :]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the bot did not catch up:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.05)

    def now(self) -> datetime:
        """The bot's time: the real time plus what the test moved its clock by."""
        return datetime.now(UTC) + self.clock_offset

    def move_clock(self, delta: timedelta) -> None:
        """Move the bot's clock forward by ``delta`` (it never goes back, as time does not):
        a running bot runs at once every job that falls due, a stopped one starts there."""
        if delta < timedelta(0):
            raise ValueError("the bot's clock only moves forward")
        self.clock_offset += delta
        self.offset_path.write_text(f"{self.clock_offset.total_seconds():.6f}")
        if self.running:
            self.process.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]

    def move_clock_to(self, moment: datetime) -> None:
        self.move_clock(max(timedelta(0), moment - self.now()))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as a service manager would; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await self.wait(timeout)

    async def wait(self, timeout: float = 30) -> int:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                raise TimeoutError(f"the bot did not exit:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.05)
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


async def _bots(
    synapse: LocalSynapse, tmp_path: Path, civicbot_bot_options: dict[str, Any]
) -> AsyncIterator[Callable[..., Awaitable[BotProcess]]]:
    """``await bots(**settings)`` registers a fresh bot account and starts ``civicbot run``."""
    made: list[BotProcess] = []

    async def make(start: bool = True, **kwargs: Any) -> BotProcess:
        user_id = synapse.register(unique("civicbot"), PASSWORD)
        directory = tmp_path / f"bot{len(made)}"
        directory.mkdir()
        bot = BotProcess(synapse, directory, user_id, **{**civicbot_bot_options, **kwargs})
        made.append(bot)
        if start:
            await bot.start()
        return bot

    yield make
    for bot in made:
        if bot.running:
            bot.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            try:
                await bot.wait(10)
            except TimeoutError:
                bot.kill()


@pytest.fixture(scope="module")
def shared_bot(
    synapse: LocalSynapse,
    tmp_path_factory: pytest.TempPathFactory,
    civicbot_bot_options: dict[str, Any],
) -> Iterator[BotProcess]:
    """One default bot for every test of a module that neither restarts it nor changes its
    settings (a start costs a few seconds: log in, upload keys, load the plugins). Each test
    makes its own rooms and residents, so what one test does is not another's business.
    Started on a loop of its own, as the tests' loops are per test."""
    process = BotProcess(
        synapse,
        tmp_path_factory.mktemp("shared-bot"),
        synapse.register(unique("civicbot"), PASSWORD),
        **civicbot_bot_options,
    )
    _run_on_own_loop(process.start())
    yield process
    if process.running:
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
        try:
            _run_on_own_loop(process.wait(10))
        except TimeoutError:
            process.kill()


def _run_on_own_loop(step: Awaitable[Any]) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(step)
    finally:
        loop.close()


def reply_target(event: dict[str, Any]) -> str | None:
    """The event id ``event`` replies to (``m.in_reply_to``), if it is a reply."""
    relation = (event.get("content") or {}).get("m.relates_to") or {}
    return (relation.get("m.in_reply_to") or {}).get("event_id")


def is_notice_from(user_id: str, contains: str = "") -> Callable[[dict[str, Any]], bool]:
    def check(event: dict[str, Any]) -> bool:
        content = event.get("content") or {}
        return (
            event.get("sender") == user_id
            and event.get("type") == "m.room.message"
            and content.get("msgtype") == "m.notice"
            and contains in content.get("body", "")
        )

    return check


def is_for(sender: str, person: str, contains: str = "") -> Callable[[dict[str, Any]], bool]:
    """A message from ``sender`` meant for ``person``: ``m.text`` mentioning exactly them, so
    their client notifies them (what the bot sends someone who must hear about it)."""

    def check(event: dict[str, Any]) -> bool:
        content = event.get("content") or {}
        return (
            event.get("sender") == sender
            and event.get("type") == "m.room.message"
            and content.get("msgtype") == "m.text"
            and content.get("m.mentions") == {"user_ids": [person]}
            and contains in content.get("body", "")
        )

    return check


async def room_with_bot(
    moderator: Resident, bot: BotProcess, *members: Resident, room_version: str | None = None
) -> str:
    """The moderator creates a room, invites the bot and members; waits for the bot's hello."""
    room = await moderator.create_room(
        name="Elm Street", invite=[bot.user_id], room_version=room_version
    )
    moderator.mark()
    for member in members:
        await moderator.invite(room, member.user_id)
        await member.join(room)
    await moderator.wait_for(room, is_notice_from(bot.user_id, "Hello"), timeout=30)
    return room


async def _encrypted_residents(
    synapse: LocalSynapse, tmp_path: Path
) -> AsyncIterator[Callable[[str], Awaitable[EncryptedResident]]]:
    """``await encrypted_residents("ann")``: a fresh user on a nio client with encryption, as
    an Element resident is (:mod:`civicbot.testing.encrypted`)."""
    made: list[EncryptedResident] = []

    async def make(name: str) -> EncryptedResident:
        user_id = synapse.register(unique(name), PASSWORD)
        resident = await EncryptedResident.login(
            synapse.url, user_id, PASSWORD, tmp_path / f"store-{name}"
        )
        made.append(resident)
        return resident

    yield make
    for resident in made:
        await resident.close()


async def encrypted_room(
    owner: EncryptedResident, bot: BotProcess, *members: EncryptedResident
) -> str:
    """An encrypted room the owner made, with the bot and members in; waits for the bot's
    (encrypted) hello."""
    room = await owner.create_room(name="Elm Street", invite=[bot.user_id])
    for member in members:
        await owner.client.room_invite(room, member.user_id)
        await member.join(room)
    hello = await owner.wait_for(room, is_notice_from(bot.user_id, "Hello"), timeout=30)
    assert hello["encrypted"]
    return room


if async_fixture is not None:
    residents = async_fixture(_residents, name="residents")
    residents.__doc__ = _residents.__doc__
    bots = async_fixture(_bots, name="bots")
    encrypted_residents = async_fixture(_encrypted_residents, name="encrypted_residents")
