"""The plugin boundary: a class with an async lifecycle, its metadata in code.

    class PingPlugin(Plugin):
        name = "ping"
        description = "Is the bot alive?"
        Config = PingConfig

        @command("ping")
        async def ping(self, ctx: Context) -> None:
            \"\"\"Check that the bot is listening.\"\"\"
            await ctx.reply("pong")

A plugin receives one :class:`~civicbot.context.PluginContext` and never imports matrix-nio or
another plugin. Plugins cooperate through the hook methods below, which the core calls on
every enabled plugin that overrides them (in the manner of pluggy hook specs).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from civicbot.commands import Command
from civicbot.events import EventKind
from civicbot.storage import Migration

if TYPE_CHECKING:
    from civicbot.context import PluginContext


class PluginConfig(BaseModel):
    """Base for a plugin's settings. Every key may be set bot-wide in ``[plugins.<name>]`` and
    overridden per room by moderators."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = True


@dataclass(frozen=True)
class DigestSection:
    """What one plugin adds to a room's weekly digest."""

    title: str
    text: str
    html: str | None = None
    order: int = 50  # lower comes first


@dataclass
class ForgetReport:
    """What a plugin removed or anonymised for ``!forget me``."""

    removed: int = 0
    anonymised: int = 0
    notes: list[str] = field(default_factory=list)


def on(*kinds: EventKind) -> Callable[[Any], Any]:
    """Mark a method ``async def handler(self, ctx: Context) -> None`` as an event hook."""

    def decorate(func: Any) -> Any:
        func.__civicbot_events__ = tuple(kinds)
        return func

    return decorate


class Plugin:
    """Base class of every plugin, built-in or installed."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    migrations: ClassVar[Sequence[Migration]] = ()
    # Roles this plugin introduces (e.g. {"councillor": "answers consultations"}).
    roles: ClassVar[dict[str, str]] = {}

    def __init__(self, ctx: PluginContext):
        self.ctx = ctx
        self.log = ctx.log

    async def setup(self) -> None:
        """Start: re-arm deadlines, warm caches. Raise to refuse loading."""

    async def teardown(self) -> None:
        """Stop: release what ``setup`` took. Deadlines stay in the database."""

    async def caught_up(self) -> None:
        """Called once per start, after the first sync batch has been handled: everything said
        while the bot was down has been seen. Act on overdue deadlines here, not in ``setup``."""

    # -- hooks other parts of civicbot call ----------------------------------------------------
    async def digest_section(
        self, room_id: str, since: datetime, until: datetime
    ) -> DigestSection | None:
        """Contribute to the room's weekly digest (activity between ``since`` and ``until``)."""
        return None

    async def export_user_data(self, user_id: str) -> dict[str, Any] | None:
        """Everything this plugin stores about ``user_id``, as JSON-able data (for ``!mydata``)."""
        return None

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        """Remove or anonymise ``user_id``'s data, keeping totals (for ``!forget me``)."""
        return None

    # -- introspection used by the loader ------------------------------------------------------
    @classmethod
    def declared_commands(cls) -> list[Command]:
        found = []
        for _, member in inspect.getmembers(cls, inspect.isfunction):
            spec = getattr(member, "__civicbot_command__", None)
            if spec is not None:
                found.append(spec)
        return found

    @classmethod
    def declared_event_hooks(cls) -> list[tuple[EventKind, str]]:
        found = []
        for attr, member in inspect.getmembers(cls, inspect.isfunction):
            for kind in getattr(member, "__civicbot_events__", ()):
                found.append((kind, attr))
        return found

    @classmethod
    def implements(cls, hook: str) -> bool:
        return getattr(cls, hook) is not getattr(Plugin, hook)

    @classmethod
    def template_dir(cls) -> Path:
        return Path(inspect.getfile(cls)).parent / "templates"
