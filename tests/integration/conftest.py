"""Integration fixtures: one real Synapse on loopback per test session, real residents speaking
raw client-server HTTP, and the bot as a real ``civicbot run`` subprocess."""

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
from pathlib import Path
from typing import Any

import pytest

from civicbot.testing.client import Resident
from civicbot.testing.encrypted import EncryptedResident
from civicbot.testing.synapse import LocalSynapse

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "a fine test password"
BOT_READY = "listening for events"

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSynapse]:
    """One Synapse for the whole run: starting one costs about two seconds."""
    server = LocalSynapse(Path(tmp_path_factory.mktemp("synapse")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def residents(synapse: LocalSynapse) -> AsyncIterator[Callable[[str], Awaitable[Resident]]]:
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
    """``civicbot run`` in a child process, so tests can SIGTERM or SIGKILL it for real."""

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
    ):
        self.synapse = synapse
        self.directory = directory
        self.user_id = user_id
        self.config_path = directory / "config.toml"
        self.log_path = directory / "bot.log"
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        tables: dict[str, dict[str, Any]] = {
            "matrix": {"homeserver": synapse.url, "user_id": user_id, "password": PASSWORD},
            "bot": {
                "data_dir": directory / "data",
                "log_level": "INFO",
                "extra_plugins": ["boom_plugin:BoomPlugin"],
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

    async def start(self, timeout: float = 30, env: dict[str, str] | None = None) -> None:
        environ = {
            **os.environ,
            **self.env,
            **(env or {}),
            "PYTHONPATH": os.pathsep.join(
                [str(REPO / "tests" / "support"), os.environ.get("PYTHONPATH", "")]
            ),
        }
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
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


@pytest.fixture
async def bots(
    synapse: LocalSynapse, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[BotProcess]]]:
    """``await bots(**settings)`` registers a fresh bot account and starts ``civicbot run``."""
    made: list[BotProcess] = []

    async def make(start: bool = True, **kwargs: Any) -> BotProcess:
        user_id = synapse.register(unique("civicbot"), PASSWORD)
        directory = tmp_path / f"bot{len(made)}"
        directory.mkdir()
        bot = BotProcess(synapse, directory, user_id, **kwargs)
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


@pytest.fixture
async def encrypted_residents(
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
