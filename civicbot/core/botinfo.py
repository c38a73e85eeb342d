"""What plugins may know about the running bot and its rooms: read-only views the core fills in.

Kept apart from :mod:`civicbot.core.context` so that modules describing commands and plugins can
name these types without importing the context (no import cycle, even under TYPE_CHECKING).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from civicbot.core.events import Event
from civicbot.core.text import clean_text
from civicbot.policy.plugin_config import PluginConfig
from civicbot.transport import Transport, TransportError


@dataclass
class HookResults:
    """What a hook returned, plugin by plugin, and which plugins' hooks failed."""

    results: list[tuple[str, Any]]
    failed: list[str]


class CommandInfo(Protocol):
    """What the help and admin plugins read about a command (see :mod:`civicbot.core.commands`)."""

    name: str
    plugin: str
    requires: str
    hidden: bool
    aliases: tuple[str, ...]
    examples: tuple[str, ...]

    @property
    def help(self) -> str: ...

    @property
    def details(self) -> str: ...

    def usage(self, prefix: str = "!") -> str: ...


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin's metadata, for plugins that describe the others (help, admin)."""

    name: str
    description: str
    roles: dict[str, str]
    config_model: type[PluginConfig]


class BotInfo(Protocol):
    """Read-only facts about the running bot."""

    @property
    def version(self) -> str: ...

    def uptime_seconds(self) -> float: ...

    def commands(self) -> Sequence[CommandInfo]: ...

    def plugin_infos(self) -> dict[str, PluginInfo]: ...

    def plugin_names(self) -> list[str]: ...

    async def enabled_plugins(self, room_id: str) -> list[str]: ...

    async def call_hook(self, hook: str, room_id: str | None, *args: Any) -> HookResults:
        """Call ``hook`` on every plugin that implements it (enabled in ``room_id`` when given):
        the ``(plugin name, result)`` pairs that are not None, and the plugins whose hook
        raised, for callers that must not report success when a part failed (``!forget me``)."""

    async def collect_hook(self, hook: str, room_id: str | None, *args: Any) -> list[Any]:
        """Like :meth:`call_hook`, the results only."""


class Rooms:
    """A read-only view of the rooms the bot is in."""

    def __init__(
        self,
        transport: Transport,
        predecessor: Callable[[str], Awaitable[str | None]] | None = None,
    ):
        self._transport = transport
        self._predecessor = predecessor

    async def predecessor(self, room_id: str) -> str | None:
        """The room ``room_id`` replaced in a room upgrade (its history is there), if any."""
        return await self._predecessor(room_id) if self._predecessor is not None else None

    @property
    def bot_user_id(self) -> str:
        return self._transport.user_id

    async def joined_members(self, room_id: str) -> list[str]:
        return await self._transport.joined_members(room_id)

    async def state_event(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        return await self._transport.state_event(room_id, event_type, state_key)

    async def display_name(self, room_id: str) -> str:
        """What a resident calls the room: its name, else its address (``#street:hs``), else
        its id, so a list of several rooms never shows only ``!abc…:hs`` where a name exists."""
        for event_type, key in (("m.room.name", "name"), ("m.room.canonical_alias", "alias")):
            try:
                content = await self._transport.state_event(room_id, event_type)
            except TransportError:
                continue
            value = content.get(key) if isinstance(content, dict) else None
            if isinstance(value, str) and clean_text(value).strip():
                return " ".join(clean_text(value).split())[:80]
        return room_id

    async def person_name(self, room_id: str, user_id: str) -> str:
        """What the room calls a person: their display name there, else the short name of
        their Matrix id (``resident2`` of ``@resident2:hs``), for replies that list people."""
        try:
            member = await self._transport.state_event(room_id, "m.room.member", user_id)
        except TransportError:
            member = None
        shown = member.get("displayname") if isinstance(member, dict) else None
        if isinstance(shown, str) and clean_text(shown).strip():
            return " ".join(clean_text(shown).split())[:64]
        return user_id.lstrip("@").split(":", 1)[0]

    async def relations(
        self, room_id: str, event_id: str, rel_type: str | None = None
    ) -> list[Event]:
        """Every event relating to ``event_id`` (all pages), e.g. to recount a poll. After a
        room upgrade an item moved to the new room has its event in the old one: the rooms
        it came through are read too."""
        rooms = [room_id]
        while (older := await self.predecessor(rooms[-1])) is not None and older not in rooms:
            rooms.append(older)
        if len(rooms) == 1:
            return await self._transport.relations(room_id, event_id, rel_type)
        found: dict[str, Event] = {}
        for room in reversed(rooms):
            try:
                for event in await self._transport.relations(room, event_id, rel_type):
                    found.setdefault(event.event_id, event)
            except TransportError:
                continue  # the event is not in this one of the rooms
        return list(found.values())

    async def is_private(self, room_id: str) -> bool:
        """Whether ``room_id`` is a room of at most two members (the bot and one person): what
        happens there is that person's, so nothing may count it per room or keep its time."""
        try:
            return len(await self._transport.joined_members(room_id)) <= 2
        except TransportError:  # unknown now: treat as private, the safe side
            return True

    async def create_event(self, room_id: str) -> dict[str, Any] | None:
        """The room's whole ``m.room.create`` event (its sender, time and ``content.type``:
        ``m.space`` for a space)."""
        return await self._transport.create_event(room_id)

    async def joined_since(self, room_id: str, user_id: str) -> datetime | None:
        """When ``user_id`` joined the room, for the stay they are in now (a later change of
        display name does not count as joining); None when not joined or not known."""
        ms = await self._transport.joined_since(room_id, user_id)
        return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)

    async def joined_rooms(self) -> list[str]:
        """Every room the bot is in (for work that runs per room, like the weekly digest)."""
        return await self._transport.joined_rooms()

    async def state_events(self, room_id: str, event_type: str) -> dict[str, dict[str, Any]]:
        """``{state_key: content}`` of one state event type (a space's ``m.space.child``)."""
        return await self._transport.state_events(room_id, event_type)


class BotFacts:
    """The :class:`BotInfo` plugins get: these facts and nothing else of the running bot (not
    its settings, which hold the Matrix password, nor its flood control)."""

    def __init__(self, bot: BotInfo):
        self.__bot = bot

    @property
    def version(self) -> str:
        return self.__bot.version

    def uptime_seconds(self) -> float:
        return self.__bot.uptime_seconds()

    def commands(self) -> Sequence[CommandInfo]:
        return self.__bot.commands()

    def plugin_infos(self) -> dict[str, PluginInfo]:
        return self.__bot.plugin_infos()

    def plugin_names(self) -> list[str]:
        return self.__bot.plugin_names()

    async def enabled_plugins(self, room_id: str) -> list[str]:
        return await self.__bot.enabled_plugins(room_id)

    async def call_hook(self, hook: str, room_id: str | None, *args: Any) -> HookResults:
        return await self.__bot.call_hook(hook, room_id, *args)

    async def collect_hook(self, hook: str, room_id: str | None, *args: Any) -> list[Any]:
        return await self.__bot.collect_hook(hook, room_id, *args)
