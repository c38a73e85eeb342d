"""What a plugin is given (:class:`PluginContext`), what each command or hook call gets
(:class:`Context`) and what each scheduled job gets (:class:`JobContext`).

The plugin context is deliberately narrow: a plugin's database handle, its config, its jobs, its
templates, ways to send, a read-only view of rooms and permissions. It never sees the bot's full
settings (they hold the Matrix password), the installation secret, or the core's flood control.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, NoReturn, TypeVar, cast
from zoneinfo import ZoneInfo

from civicbot.core.botinfo import BotInfo, Rooms
from civicbot.core.effects import EffectRunner, PluginEffects
from civicbot.core.events import Event, Message, matrix_to
from civicbot.core.outgoing import Outgoing, txn_key
from civicbot.core.posts import ItemPosts, PluginPosts
from civicbot.core.public import PublicPages
from civicbot.core.routing import room_via
from civicbot.core.templates import Rendered, Templates
from civicbot.policy.limits import DROPPED, FloodGuard, SendPacer, Verdict, flood_notice
from civicbot.policy.permissions import Permissions
from civicbot.policy.plugin_config import ROOM, PluginConfig, RoomConfig
from civicbot.policy.room_settings import RoomSettings, RoomSettingsView
from civicbot.scheduling.clock import Clock
from civicbot.scheduling.jobs import Jobs
from civicbot.scheduling.scheduler import Scheduler
from civicbot.storage.core_stores import AuditLog, PersonRecords, RoleStore
from civicbot.storage.database import Database
from civicbot.storage.private_store import PrivateStore
from civicbot.transport import Transport

ConfigT = TypeVar("ConfigT", bound=PluginConfig)


class RoleCheck:
    """The answer of :meth:`Context.has_role`: it must be awaited.

    ``if not ctx.has_role(Role.MODERATOR)`` (no ``await``) would be a coroutine, always true, and
    so a permission check that lets everyone through. A ``RoleCheck`` used as a truth value
    raises instead, so the mistake fails the plugin's first test rather than its users."""

    __slots__ = ("_check",)

    def __init__(self, check: Awaitable[bool]):
        self._check = check

    def __await__(self) -> Generator[Any, None, bool]:
        return self._check.__await__()

    def __bool__(self) -> NoReturn:
        close = getattr(self._check, "close", None)
        if close is not None:
            close()  # no "coroutine was never awaited" warning on top of the error
        raise TypeError("ctx.has_role(...) must be awaited: `if await ctx.has_role(role):`")


@dataclass(frozen=True)
class CoreServices:
    """What the core hands every plugin context; built once by the bot."""

    db: Database
    scheduler: Scheduler
    transport: Transport
    room_settings: RoomSettings
    permissions: Permissions
    clock: Clock
    pacer: SendPacer
    bot: BotInfo
    prefix: str
    default_timezone: str
    keyed_hash: Callable[[str], str]  # keyed with the installation secret, which stays out
    effects: EffectRunner
    posts: ItemPosts
    public: PublicPages | None = None  # the public web pages (civicbot.web)
    predecessor: Callable[[str], Awaitable[str | None]] | None = None  # room upgrades


@dataclass(frozen=True)
class RoomManagement:
    """The write side of the core's room stores: settings, granted roles, the audit log. Handed
    only to the built-in plugin that runs rooms (``manages_rooms = True``, the admin plugin);
    every other plugin reads settings through
    :class:`~civicbot.policy.room_settings.RoomSettingsView`."""

    settings: RoomSettings
    roles: RoleStore
    audit: AuditLog
    records: PersonRecords  # what the core's tables hold about one person (!mydata, !forget me)


class PluginContext(Generic[ConfigT]):
    """Everything a plugin may use. One per loaded plugin."""

    def __init__(
        self,
        name: str,
        templates: Templates,
        core: CoreServices,
        management: RoomManagement | None = None,
    ):
        self.name = name
        self.templates = templates
        # Only this plugin's own tables: SQLite's authorizer refuses anything else.
        self.db = core.db.scoped(name)
        self.clock = core.clock
        self.room_settings = RoomSettingsView(core.room_settings)
        self.permissions = core.permissions
        self.management = management
        self.bot = core.bot
        self.prefix = core.prefix
        self.rooms = Rooms(core.transport, core.predecessor)
        # The room's public page, calendar feeds and noticeboard, as plugins may use them.
        self.public = core.public
        # Promised effects (a DM, a room, a notice), kept exactly once: civicbot.core.effects.
        self.effects = PluginEffects(core.effects, name)
        # The bot's posts about this plugin's items, edited when an item changes (refresh).
        self.posts = PluginPosts(core.posts, name)
        self.log = logging.getLogger(f"civicbot.plugins.{name}")
        self.jobs: Jobs[JobContext[ConfigT]] = Jobs(
            core.scheduler.scoped(name), core.clock, self._job_context
        )
        self._core = core
        self._private: PrivateStore | None = None

    @property
    def private_store(self) -> PrivateStore:
        """This plugin's private store (``private-<plugin>.sqlite3``): where anything that must
        never be tied to a person is kept — who took part on one side, what they said on the
        other, written in shuffled batches (see :mod:`civicbot.storage.private_store`)."""
        if self._private is None:
            self._private = PrivateStore(self.db, self.name)
        return self._private

    async def config(self, room_id: str) -> ConfigT:
        """This plugin's settings for ``room_id`` (defaults merged with the room's overrides)."""
        return cast(ConfigT, await self.room_settings.get(room_id, self.name))

    @property
    def default_config(self) -> ConfigT:
        return cast(ConfigT, self.room_settings.default(self.name))

    @property
    def default_zone(self) -> ZoneInfo:
        """The bot's own time zone (``bot.timezone``), for work that belongs to no room."""
        return ZoneInfo(self._core.default_timezone)

    async def timezone(self, room_id: str) -> ZoneInfo:
        room = await self.room_settings.get(room_id, ROOM)
        assert isinstance(room, RoomConfig)
        return ZoneInfo(room.timezone or self._core.default_timezone)

    def keyed_hash(self, text: str) -> str:
        """A stable stand-in for ``text`` that nobody holding only the database can recompute:
        keyed with this installation's secret (``data_dir/secret.key``, never in the database)."""
        return self._core.keyed_hash(text)

    def render(self, name: str, **values: Any) -> Rendered:
        """One of this plugin's templates, with ``prefix`` filled in."""
        return self.templates.render(name, **{"prefix": self.prefix, **values})

    def outgoing(self, key: str, *more: str) -> Outgoing:
        """Idempotent sends for work caused neither by an event nor by a job (which have their
        own): the same ``key`` always gives the same transaction ids, so name what the send is
        *for* (``f"welcome:{room_id}"``), not when it happens."""
        return Outgoing(self._core.transport, txn_key(self.name, key, *more), self._core.pacer)

    async def send(
        self,
        room_id: str,
        content: str | Rendered,
        *,
        key: str,
        thread_root: str | None = None,
        reply_to: str | None = None,
        mentions: tuple[str, ...] = (),
        mention_room: bool = False,
        on_behalf_of: str | None = None,
        notify: tuple[str, ...] = (),
        item: str | None = None,
    ) -> str:
        """Post a notice that no event or job caused; ``key`` makes it idempotent (see
        :meth:`outgoing`). It pings the room or many people only ``on_behalf_of`` someone who
        may ping the room (checked now); ``notify`` names who must hear about it (see
        :class:`~civicbot.core.events.Message`); ``item`` records it as a post about that item,
        edited by :meth:`refresh`."""
        event_id = await send_notice(
            self,
            self.outgoing(key),
            room_id,
            content,
            thread_root=thread_root,
            reply_to=reply_to,
            mentions=mentions,
            mention_room=mention_room,
            on_behalf_of=on_behalf_of,
            notify=notify,
        )
        if item is not None:
            await self.posts.remember(item, room_id, event_id)
        return event_id

    async def refresh(self, item: str, content: str | Rendered, *, key: str) -> int:
        """Edit every post recorded about ``item`` (see :mod:`civicbot.core.posts`) to
        ``content``, outside a handler or a job: ``key`` names the change, as for :meth:`send`
        (``f"closed:{poll.id}"``), so a repeat sends the same transaction ids. Returns how many
        posts were edited."""
        text, html = _text_html(content)
        return await self.posts.refresh(item, text, html, self.outgoing("refresh", item, key))

    async def via(self, room_id: str) -> list[str]:
        """Up to three servers that route a link to ``room_id`` (see
        :func:`~civicbot.core.events.via_servers`), from the room's members, power levels and
        server ACL."""
        return await room_via(self._core.transport, self.permissions, room_id)

    async def link(self, room_id: str, event_id: str | None = None) -> str:
        """A matrix.to link to ``room_id`` (or one of its events) that opens from any
        homeserver: it names the servers to reach the room through (``via=``)."""
        return matrix_to(room_id, event_id, await self.via(room_id))

    async def direct_room(self, user_id: str) -> str:
        """The private room the bot uses to talk to ``user_id`` alone, created when needed."""
        return await self._core.transport.direct_room(user_id)

    async def is_direct(self, room_id: str, user_id: str) -> bool:
        """Whether ``room_id`` is ``user_id``'s direct chat with the bot by the DM rule of
        :mod:`civicbot.transport.direct`: only there may private input be taken."""
        return await self._core.transport.is_direct_with(room_id, user_id)

    async def known_direct_room(self, user_id: str) -> str | None:
        """The direct chat last used with ``user_id``, without checking or creating one."""
        return await self._core.transport.known_direct_room(user_id)

    async def forget_direct_room(self, user_id: str) -> int:
        """Drop the bot's records of its direct chats with ``user_id`` (``!forget me``), and
        every promise not yet kept that names them."""
        dropped = await self._core.effects.forget(user_id)
        return dropped + await self._core.transport.forget_direct_room(user_id)

    async def create_private_room(self, name: str, invite: list[str]) -> str:
        """Create a new invite-only room with exactly the bot and the people in ``invite``
        (e.g. to introduce a helper to the neighbour they help) and return its id. Every call
        makes a new room, so keep the id and check it before calling again."""
        return await self._core.transport.create_private_room(name, invite)

    def _job_context(self, key: str, due: datetime, attempt: int) -> JobContext[ConfigT]:
        out = Outgoing(
            self._core.transport, txn_key(self.name, "job", key, due.isoformat()), self._core.pacer
        )
        return JobContext(self, key, due, attempt, out)


async def send_notice(
    plugin: PluginContext[Any],
    out: Outgoing,
    room_id: str,
    content: str | Rendered,
    *,
    thread_root: str | None = None,
    reply_to: str | None = None,
    mentions: tuple[str, ...] = (),
    mention_room: bool = False,
    on_behalf_of: str | None = None,
    notify: tuple[str, ...] = (),
) -> str:
    """Send a notice for nobody in particular (or ``on_behalf_of`` someone); ``notify`` names
    who must hear about it."""
    text, html = _text_html(content)
    message = Message(
        text,
        html,
        mentions=mentions,
        mention_room=mention_room,
        thread_root=thread_root,
        reply_to=reply_to,
        notify=notify,
    )
    may_ping = await plugin.permissions.may_ping_room(room_id, on_behalf_of)
    return await out.message(room_id, message, may_ping_room=may_ping)


def _text_html(content: str | Rendered) -> tuple[str, str | None]:
    if isinstance(content, Rendered):
        return content.text, content.html
    return content, None


class JobContext(Generic[ConfigT]):
    """One run of a scheduled job: ``due`` is when it was meant to run (``now`` may be later,
    after downtime), ``attempt`` counts retries (0 the first time)."""

    def __init__(
        self, plugin: PluginContext[ConfigT], key: str, due: datetime, attempt: int, out: Outgoing
    ):
        self.plugin = plugin
        self.key = key
        self.due = due
        self.attempt = attempt
        self.out = out

    @property
    def now(self) -> datetime:
        return self.plugin.clock.now()

    async def config(self, room_id: str) -> ConfigT:
        return await self.plugin.config(room_id)

    async def timezone(self, room_id: str) -> ZoneInfo:
        return await self.plugin.timezone(room_id)

    def render(self, name: str, **values: Any) -> Rendered:
        return self.plugin.render(name, **values)

    async def send(
        self,
        room_id: str,
        content: str | Rendered,
        *,
        thread_root: str | None = None,
        reply_to: str | None = None,
        mentions: tuple[str, ...] = (),
        mention_room: bool = False,
        on_behalf_of: str | None = None,
        notify: tuple[str, ...] = (),
        item: str | None = None,
    ) -> str:
        """Post a notice; pings the room only ``on_behalf_of`` someone who may (checked now);
        ``notify`` names who must hear about it; ``item`` records it as a post about that item,
        edited by :meth:`refresh`."""
        event_id = await send_notice(
            self.plugin,
            self.out,
            room_id,
            content,
            thread_root=thread_root,
            reply_to=reply_to,
            mentions=mentions,
            mention_room=mention_room,
            on_behalf_of=on_behalf_of,
            notify=notify,
        )
        if item is not None:
            await self.plugin.posts.remember(item, room_id, event_id)
        return event_id

    async def refresh(self, item: str, content: str | Rendered) -> int:
        """Edit every post recorded about ``item`` to ``content`` (the item changed in this
        run); returns how many were edited."""
        text, html = _text_html(content)
        return await self.plugin.posts.refresh(item, text, html, self.out)

    async def send_event(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        return await self.out.event(room_id, event_type, content)

    async def dm(self, user_id: str, content: str | Rendered, *, notify: bool = True) -> str:
        """Message someone privately, in the bot's direct room with them. A message the bot
        starts in a DM is for that person, so it notifies them (``notify=False`` for one that
        need not)."""
        room_id = await self.plugin.direct_room(user_id)
        return await send_notice(
            self.plugin, self.out, room_id, content, notify=(user_id,) if notify else ()
        )

    async def dm_file(
        self, user_id: str, data: bytes, filename: str, content_type: str = "application/json"
    ) -> str:
        """Send someone a file privately, in the bot's direct room with them."""
        room_id = await self.plugin.direct_room(user_id)
        return await self.out.file(room_id, data, filename, content_type)


class Context(Generic[ConfigT]):
    """One handler call: the event, the plugin, the room's settings and ways to answer."""

    def __init__(
        self,
        event: Event,
        plugin: PluginContext[ConfigT],
        config: ConfigT,
        out: Outgoing,
        guard: FloodGuard | None = None,
    ):
        self.event = event
        self.plugin = plugin
        self.config = config
        self.prefix = plugin.prefix
        self.out = out
        self._guard = guard

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

    def has_role(self, role: str, user_id: str | None = None) -> RoleCheck:
        """Whether the sender (or ``user_id``) holds ``role`` here: ``await ctx.has_role(...)``.

        Prefer ``@command(..., requires=Role.MODERATOR)``, which the core checks before the
        handler runs; this is for a check that depends on the item (the author or a moderator)."""
        return RoleCheck(self.plugin.permissions.has(self.room_id, user_id or self.sender, role))

    async def is_direct(self) -> bool:
        """True only in the sender's direct chat with the bot (the DM rule of
        :mod:`civicbot.transport.direct`), where private output and secret ballots may go."""
        return await self.plugin.is_direct(self.room_id, self.sender)

    async def reply(
        self,
        content: str | Rendered,
        *,
        html: str | None = None,
        mentions: tuple[str, ...] = (),
        mention_room: bool = False,
        thread: bool = True,
        notify: tuple[str, ...] = (),
        item: str | None = None,
    ) -> str:
        """Answer in the room (in the thread the event came from) as a notice; ``notify`` names
        who must hear about it (see :class:`~civicbot.core.events.Message`); ``item`` records
        the answer as a post about that item, edited by :meth:`refresh`."""
        text, rendered_html = _text_html(content)
        message = Message(
            text,
            html or rendered_html,
            mentions=mentions,
            mention_room=mention_room,
            reply_to=self.event.event_id,
            thread_root=self.event.thread_root if thread else None,
            notify=notify,
        )
        return await self.send_message(self.room_id, message, item=item)

    async def reply_template(self, name: str, **values: Any) -> str:
        return await self.reply(self.plugin.render(name, **values))

    async def send_message(self, room_id: str, message: Message, *, item: str | None = None) -> str:
        """Send after checking the requester may cause every ping the message would make (in
        the room it goes to) and is not flooding the bot. Returns "" when nothing was sent
        because the requester is cooling down; a message for someone (``notify``) is owed to
        them and always sent. ``item`` records it as a post about that item (a need, a poll),
        which :meth:`refresh` edits when the item changes."""
        if not message.notify and not await self._cleared():
            return ""
        may_ping = await self.plugin.permissions.may_ping_room(room_id, self.sender)
        event_id = await self.out.message(room_id, message, may_ping_room=may_ping)
        if item is not None:
            await self.plugin.posts.remember(item, room_id, event_id)
        return event_id

    async def refresh(self, item: str, content: str | Rendered) -> int:
        """Edit every post recorded about ``item`` (in any room) to ``content``, because this
        event changed it (edited, withdrawn, closed): the room never keeps showing what is no
        longer so. Never dropped by the flood guard (the room's truth is owed to everyone in
        it) and never a ping. Returns how many posts were edited."""
        text, html = _text_html(content)
        return await self.plugin.posts.refresh(item, text, html, self.out)

    async def send_event(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        """Send a raw event (a native poll, an edit) caused by this event."""
        if not await self._cleared():
            return ""
        return await self.out.event(room_id, event_type, content)

    async def _cleared(self) -> bool:
        """Charge what the bot says about this event to its sender's flood bucket, once.

        Commands are charged by the core before they run; this catches the rest (refusals,
        hints, event hooks), so someone flooding is ignored whatever they send. The first answer
        over the limit is replaced by the one polite notice."""
        guard = self._guard
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
            await self.out.message(self.room_id, notice, may_ping_room=False)
            return False
        return decision.allowed

    async def dm(self, user_id: str, content: str | Rendered, *, notify: bool = True) -> str:
        """Message someone privately, in a direct room created when needed. A direct message
        is owed to its reader (an offer of help, a receipt, an introduction): the flood guard
        never drops it (the pacer may delay it), and it notifies them (``notify=False`` for
        one that need not)."""
        text, html = _text_html(content)
        room_id = await self.plugin.direct_room(user_id)
        message = Message(text, html, notify=(user_id,) if notify else ())
        return await self.out.message(room_id, message, may_ping_room=False)

    async def dm_file(
        self, user_id: str, data: bytes, filename: str, content_type: str = "application/json"
    ) -> str:
        """Send someone a file privately (e.g. their data export), in a direct room; owed to
        them like :meth:`dm`."""
        room_id = await self.plugin.direct_room(user_id)
        return await self.out.file(room_id, data, filename, content_type)
