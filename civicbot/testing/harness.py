"""Drive the real bot (real database, templates and plugins) through a fake transport.

async with BotHarness.create(tmp_path) as h:
    room = h.room(members=["@ann:test"])
    await h.say(room, "@ann:test", "!ping")
    assert "Pong" in h.last_text(room)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from civicbot.config import Settings
from civicbot.core.bot import Bot
from civicbot.core.events import Event
from civicbot.core.loader import discover
from civicbot.core.plugin import Plugin
from civicbot.scheduling.clock import FakeClock
from civicbot.scheduling.scheduler import ManualScheduler
from civicbot.storage.database import Database
from civicbot.transport.fake import FakeTransport

MODERATOR = "@mod:test"


def builtin_plugins() -> dict[str, type[Plugin]]:
    """civicbot's own plugins, by name: what a plugin's tests load beside their plugin
    (``{**builtin_plugins(), "reminders": RemindersPlugin}``), as the harness loads only what
    a test names."""
    return discover(builtin_only=True)


class BotHarness:
    def __init__(
        self,
        bot: Bot,
        transport: FakeTransport,
        clock: FakeClock,
        scheduler: ManualScheduler,
        db: Database,
        path: Path,
    ):
        self.bot, self.transport, self.clock = bot, transport, clock
        self.scheduler, self.db, self.path = scheduler, db, path
        self._rooms = 0

    @classmethod
    @asynccontextmanager
    async def create(
        cls,
        tmp_path: Path,
        plugin_classes: dict[str, type[Plugin]] | None = None,
        **settings: Any,
    ) -> AsyncIterator[BotHarness]:
        """``settings`` are Settings sections, e.g. ``plugins={"polls": {"enabled": False}}``;
        ``plugin_classes`` replaces the built-in plugins (the default): a plugin installed in
        the same environment is loaded only when a test names it, so it cannot change what
        another project's tests see."""
        harness = await cls.start(tmp_path, plugin_classes, **settings)
        try:
            yield harness
        finally:
            await harness.close()

    @classmethod
    async def start(
        cls,
        tmp_path: Path,
        plugin_classes: dict[str, type[Plugin]] | None = None,
        db: Database | None = None,
        clock: FakeClock | None = None,
        transport: FakeTransport | None = None,
        **settings: Any,
    ) -> BotHarness:
        settings.setdefault("bot", {})
        settings["bot"].setdefault("data_dir", tmp_path)
        config = Settings(**settings)
        db = db or await Database.open(tmp_path / "civicbot.sqlite3")
        clock = clock or FakeClock()
        scheduler = ManualScheduler(clock)
        transport = transport or FakeTransport(clock=clock)
        classes = plugin_classes if plugin_classes is not None else discover(builtin_only=True)
        bot = Bot(config, transport, db, clock, scheduler, classes)
        try:
            await bot.start()
        except BaseException:
            await db.close()
            raise
        return cls(bot, transport, clock, scheduler, db, tmp_path)

    async def restart(self) -> BotHarness:
        """Stop the bot and start a new one on the same database and transport."""
        await self.bot.stop()
        fresh = await BotHarness.start(
            self.path,
            self.bot.plugin_classes,
            db=self.db,
            clock=self.clock,
            transport=self.transport,
            **self.bot.settings.model_dump(mode="python"),
        )
        fresh._rooms = self._rooms
        return fresh

    async def close(self) -> None:
        await self.bot.stop()
        await self.db.close()

    def room(
        self,
        members: list[str] | None = None,
        room_version: str = "10",
        power: dict[str, int] | None = None,
    ) -> str:
        self._rooms += 1
        room_id = f"!room{self._rooms}:test"
        members = members or ["@ann:test", "@bob:test"]
        users = {MODERATOR: 50, **(power or {})}
        self.transport.add_room(
            room_id,
            [MODERATOR, *members],
            power_levels={"users": users},
            creator=MODERATOR,
            room_version=room_version,
        )
        return room_id

    async def send(
        self, room_id: str, sender: str, event_type: str, content: dict[str, Any], **kwargs: Any
    ) -> Event:
        kwargs.setdefault("ts", int(self.clock.now().timestamp() * 1000))
        event = self.transport.make_event(room_id, sender, event_type, content, **kwargs)
        await self.bot.handle_batch([event])
        return event

    async def say(self, room_id: str, sender: str, text: str, **content: Any) -> Event:
        return await self.send(
            room_id, sender, "m.room.message", {"msgtype": "m.text", "body": text, **content}
        )

    async def advance(self, delta: timedelta) -> None:
        await self.scheduler.advance(delta)

    def texts(self, room_id: str | None = None) -> list[str]:
        return self.transport.texts(room_id)

    def last_text(self, room_id: str | None = None) -> str:
        texts = self.texts(room_id)
        return texts[-1] if texts else ""
