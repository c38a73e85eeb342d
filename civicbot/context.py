"""What a plugin is given (:class:`PluginContext`) and what each call gets (:class:`Context`)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from civicbot.clock import Clock
from civicbot.config import Settings
from civicbot.events import Event, Message
from civicbot.permissions import PowerLevels, Role, restrict_mentions, role_satisfied
from civicbot.ratelimit import DROPPED, FloodGuard, SendPacer, Verdict, flood_notice
from civicbot.roomsettings import ROOM, RoomConfig, RoomSettings
from civicbot.scheduler import Scheduler
from civicbot.storage import Database
from civicbot.templates import Rendered, Templates
from civicbot.transport import Transport

if TYPE_CHECKING:
    from civicbot.commands import Command
    from civicbot.plugin import Plugin, PluginConfig


@dataclass
class HookResults:
    """What a hook returned, plugin by plugin, and which plugins' hooks failed."""

    results: list[tuple[str, Any]]
    failed: list[str]


CommandGate = Callable[[Event, "Command"], Awaitable[str | None]]


class Permissions:
    """Resolves roles from power levels (cached per room until they change) and granted roles."""

    def __init__(self, transport: Transport, db: Database, room_settings: RoomSettings):
        self._transport = transport
        self._db = db
        self._room_settings = room_settings
        self._power: dict[str, PowerLevels] = {}
        self._generation: dict[str, int] = {}

    def forget_room(self, room_id: str) -> None:
        """Drop cached power levels (called when an ``m.room.power_levels`` event arrives)."""
        self._power.pop(room_id, None)
        self._generation[room_id] = self._generation.get(room_id, 0) + 1

    async def power_levels(self, room_id: str) -> PowerLevels:
        cached = self._power.get(room_id)
        if cached is None:
            generation = self._generation.get(room_id, 0)
            content = await self._transport.state_event(room_id, "m.room.power_levels")
            create = await self._transport.create_event(room_id)
            cached = PowerLevels.from_state(content, create)
            if generation == self._generation.get(room_id, 0):  # no change arrived meanwhile
                self._power[room_id] = cached
        return cached

    async def granted(self, room_id: str, user_id: str) -> set[str]:
        rows = await self._db.fetchall(
            "SELECT role FROM core_roles WHERE room_id = ? AND user_id = ?", (room_id, user_id)
        )
        return {row["role"] for row in rows}

    async def role_levels(self, room_id: str) -> dict[str, int]:
        room = await self._room_settings.get(room_id, ROOM)
        assert isinstance(room, RoomConfig)
        return {
            Role.MODERATOR: room.moderator_level,
            Role.ADMIN: room.admin_level,
            **room.role_levels,
        }

    async def has(self, room_id: str, user_id: str, role: str) -> bool:
        if role == Role.EVERYONE:
            return True
        levels = await self.power_levels(room_id)
        return role_satisfied(
            role,
            levels.level(user_id),
            await self.granted(room_id, user_id),
            await self.role_levels(room_id),
        )

    async def describe(self, room_id: str, role: str) -> str:
        """'moderators (power level 50 or more)' — for polite refusals."""
        levels = {**await self.role_levels(room_id)}
        needed = levels.get(role, levels[Role.MODERATOR])
        plural = {"everyone": "everyone", "admin": "admins"}.get(role, f"{role}s")
        return f"{plural} (power level {needed} or more, or a granted '{role}' role)"


def txn_key(*parts: str) -> str:
    """A short, stable transaction-id prefix derived from what caused the sends."""
    return "cb" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]


class Outgoing:
    """Sends with transaction ids derived from a stable key: when a handler is replayed after a
    crash, its sends repeat the same ids and the homeserver keeps only the first copy.

    Every send waits its turn in the room's outgoing bucket (:class:`~civicbot.ratelimit.
    SendPacer`): the bot may be slowed down, but it never floods a room and never drops a send.
    """

    def __init__(self, transport: Transport, key: str, pacer: SendPacer):
        self._transport = transport
        self._key = key
        self._count = 0
        self._pacer = pacer

    def _txn(self) -> str:
        self._count += 1
        return f"{self._key}.{self._count}"

    async def message(self, room_id: str, message: Message) -> str:
        txn = self._txn()
        await self._pacer.wait(room_id)
        return await self._transport.send_message(room_id, message, txn)

    async def event(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        txn = self._txn()
        await self._pacer.wait(room_id)
        return await self._transport.send_event(room_id, event_type, content, txn)

    async def file(self, room_id: str, data: bytes, filename: str, content_type: str) -> str:
        txn = self._txn()
        await self._pacer.wait(room_id)
        return await self._transport.send_file(room_id, data, filename, content_type, txn)

    async def redact(self, room_id: str, event_id: str, reason: str) -> str:
        txn = self._txn()
        await self._pacer.wait(room_id)
        return await self._transport.redact(room_id, event_id, reason, txn)


class BotInfo(Protocol):
    """Read-only facts about the running bot, for plugins such as help and ping."""

    version: str
    plugin_classes: dict[str, type[Plugin]]  # by name: metadata (description, roles, Config)
    pacer: SendPacer  # paces every send per room; plugins may configure it
    flood_guard: FloodGuard | None  # charges what the bot says to whoever caused it
    secret_key: bytes  # this installation's secret, kept beside the database, not in it

    def set_flood_guard(self, guard: FloodGuard | None) -> None:
        """Install (or remove, with None) the guard that keeps floods from being answered."""

    def uptime_seconds(self) -> float: ...

    def commands(self) -> list[Command]: ...

    def plugin_names(self) -> list[str]: ...

    async def enabled_plugins(self, room_id: str) -> list[str]: ...

    async def call_hook(self, hook: str, room_id: str | None, *args: Any) -> HookResults:
        """Like :meth:`collect_hook`, but also names the plugins whose hook raised, for callers
        that must not report success when a part failed (``!forget me``)."""

    async def collect_hook(self, hook: str, room_id: str | None, *args: Any) -> list[Any]:
        """Call ``hook`` on every plugin that implements it (enabled in ``room_id`` when given).
        Returns ``(plugin name, result)`` pairs for the results that are not None."""

    def add_command_gate(self, gate: CommandGate) -> None:
        """Run ``gate(event, command)`` before every command. It returns None to let the command
        through, a message to refuse with it, or "" to drop the command silently."""


@dataclass
class PluginContext:
    """Everything a plugin may use. One per loaded plugin."""

    name: str
    db: Database
    scheduler: Scheduler
    templates: Templates
    transport: Transport
    settings: Settings
    room_settings: RoomSettings
    permissions: Permissions
    clock: Clock
    log: logging.Logger
    bot: BotInfo

    async def config(self, room_id: str) -> Any:
        """This plugin's settings for ``room_id`` (defaults merged with the room's overrides)."""
        return await self.room_settings.get(room_id, self.name)

    @property
    def default_config(self) -> Any:
        return self.room_settings.default(self.name)

    async def timezone(self, room_id: str) -> ZoneInfo:
        room = await self.room_settings.get(room_id, ROOM)
        assert isinstance(room, RoomConfig)
        return ZoneInfo(room.timezone or self.settings.bot.timezone)

    def keyed_hash(self, text: str) -> str:
        """A stable stand-in for ``text`` that nobody holding only the database can recompute:
        keyed with this installation's secret (``data_dir/secret.key``, never in the database)."""
        return hmac.new(self.bot.secret_key, text.encode(), hashlib.sha256).hexdigest()

    def outgoing(self, *key_parts: str) -> Outgoing:
        """Idempotent sends for work not caused by an event (a deadline, a digest)."""
        return Outgoing(self.transport, txn_key(self.name, *key_parts), self.bot.pacer)

    async def send(
        self,
        room_id: str,
        content: str | Rendered,
        *key_parts: str,
        thread_root: str | None = None,
        reply_to: str | None = None,
        mentions: tuple[str, ...] = (),
        mention_room: bool = False,
        on_behalf_of: str | None = None,
    ) -> str:
        """Post a notice in a room from a scheduled job; ``key_parts`` make it idempotent.

        Nobody asked for this send just now, so it pings the room or many people only
        ``on_behalf_of`` someone who may ping the room (checked at the time of sending, e.g. the
        organiser of a meeting whose reminder this is)."""
        text, html = _text_html(content)
        may_ping = False
        if on_behalf_of is not None:
            may_ping = (await self.permissions.power_levels(room_id)).can_notify_room(on_behalf_of)
        text, html, mentions, mention_room = restrict_mentions(
            text, html, mentions, mention_room, may_ping
        )
        message = Message(
            text,
            html,
            mentions=mentions,
            mention_room=mention_room,
            thread_root=thread_root,
            reply_to=reply_to,
        )
        return await self.outgoing(*key_parts).message(room_id, message)


def _text_html(content: str | Rendered) -> tuple[str, str | None]:
    if isinstance(content, Rendered):
        return content.text, content.html
    return content, None


class Context:
    """One handler call: the event, the plugin, the room's settings and ways to answer."""

    def __init__(
        self,
        event: Event,
        plugin: PluginContext,
        config: PluginConfig,
        prefix: str,
        out: Outgoing,
        command: Command | None = None,
    ):
        self.event = event
        self.plugin = plugin
        self.config: Any = config
        self.prefix = prefix
        self.out = out
        self.command = command

    @property
    def room_id(self) -> str:
        return self.event.room_id

    @property
    def sender(self) -> str:
        return self.event.sender

    @property
    def now(self) -> datetime:
        return self.plugin.clock.now()

    async def timezone(self) -> ZoneInfo:
        return await self.plugin.timezone(self.room_id)

    async def has_role(self, role: str, user_id: str | None = None) -> bool:
        return await self.plugin.permissions.has(self.room_id, user_id or self.sender, role)

    async def is_direct(self) -> bool:
        """True only in the sender's direct chat with the bot (the DM rule of
        :mod:`civicbot.transport.direct`), where private output and secret ballots may go."""
        return await self.plugin.transport.is_direct_with(self.room_id, self.sender)

    async def reply(
        self,
        content: str | Rendered,
        *,
        html: str | None = None,
        mentions: tuple[str, ...] = (),
        mention_room: bool = False,
        thread: bool = True,
    ) -> str:
        """Answer in the room (in the thread the event came from) as a notice."""
        text, rendered_html = _text_html(content)
        message = Message(
            text,
            html or rendered_html,
            mentions=mentions,
            mention_room=mention_room,
            reply_to=self.event.event_id,
            thread_root=self.event.thread_root if thread else None,
        )
        return await self.send_message(self.room_id, message)

    async def reply_template(self, name: str, **values: Any) -> str:
        return await self.reply(self.plugin.templates.render(name, prefix=self.prefix, **values))

    async def send_message(self, room_id: str, message: Message) -> str:
        """Send after checking the requester may cause every ping the message would make (in
        the room it goes to) and is not flooding the bot. Returns "" when nothing was sent
        because the requester is cooling down."""
        if not await self._cleared():
            return ""
        raw_mentions = message.extra.pop("m.mentions", None)
        if isinstance(raw_mentions, dict):  # fold raw m.mentions into the fields checked below
            users = raw_mentions.get("user_ids")
            if isinstance(users, list):
                message.mentions = (*message.mentions, *(str(u) for u in users))
            message.mention_room = message.mention_room or bool(raw_mentions.get("room"))
        power = await self.plugin.permissions.power_levels(room_id)
        message.text, message.html, message.mentions, message.mention_room = restrict_mentions(
            message.text,
            message.html,
            message.mentions,
            message.mention_room,
            power.can_notify_room(self.sender),
        )
        return await self.out.message(room_id, message)

    async def _cleared(self) -> bool:
        """Charge what the bot says about this event to its sender's flood bucket, once.

        Commands are charged by the admin plugin's gate before they run; this catches the rest
        (refusals, hints, event hooks), so someone flooding is ignored whatever they send. The
        first answer over the limit is replaced by the one polite notice."""
        guard = self.plugin.bot.flood_guard
        if guard is None or not self.event.event_id or not self.event.sender:
            return True
        decision = await guard.admit(self.room_id, self.sender, self.event.event_id)
        if decision.verdict is Verdict.NOTICE:
            guard.remember(self.event.event_id, DROPPED)
            notice = Message(
                flood_notice(decision, self.prefix),
                reply_to=self.event.event_id,
                thread_root=self.event.thread_root,
            )
            await self.out.message(self.room_id, notice)
            return False
        return decision.allowed

    async def dm(self, user_id: str, content: str | Rendered) -> str:
        """Message someone privately, in a direct room created when needed."""
        if not await self._cleared():
            return ""
        text, html = _text_html(content)
        text, html, _, _ = restrict_mentions(text, html, (), False, may_ping_room=False)
        room_id = await self.plugin.transport.direct_room(user_id)
        return await self.out.message(room_id, Message(text, html))

    async def dm_file(
        self, user_id: str, data: bytes, filename: str, content_type: str = "application/json"
    ) -> str:
        """Send someone a file privately (e.g. their data export), in a direct room."""
        if not await self._cleared():
            return ""
        room_id = await self.plugin.transport.direct_room(user_id)
        return await self.out.file(room_id, data, filename, content_type)
