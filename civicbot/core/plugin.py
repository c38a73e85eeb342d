"""The plugin boundary: a class with an async lifecycle, its metadata in code.

    class PingPlugin(Plugin[PingConfig]):
        name = "ping"
        description = "Is the bot alive?"
        templates = ("pong",)

        @command("ping")
        async def ping(self, ctx: Context[PingConfig]) -> None:
            \"\"\"Check that the bot is listening.\"\"\"
            await ctx.reply_template("pong")

The config model is the type argument (``Plugin[PingConfig]``), so ``self.ctx.config(room)``
and ``ctx.config`` are typed; a plugin without settings writes ``Plugin[PluginConfig]``.

A plugin receives one :class:`~civicbot.core.context.PluginContext` and never imports matrix-nio or
another plugin. Plugins cooperate through the hook methods below, which the core calls on
every enabled plugin that overrides them (in the manner of pluggy hook specs).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Generic, get_args, get_origin

from civicbot.core.commands import Command, HandlerT
from civicbot.core.context import ConfigT, PluginContext
from civicbot.core.events import Event, EventKind
from civicbot.core.public import (
    PublicConsultation,
    PublicCount,
    PublicDecision,
    PublicMeeting,
    PublicPost,
    PublicSection,
    PublicUpdate,
)
from civicbot.policy.plugin_config import PluginConfig
from civicbot.storage.core_stores import ForgetReport
from civicbot.storage.database import Migration

__all__ = [
    "DigestSection",
    "ForgetReport",
    "Plugin",
    "PluginConfig",
    "PublicConsultation",
    "PublicCount",
    "PublicDecision",
    "PublicMeeting",
    "PublicPost",
    "PublicSection",
    "PublicUpdate",
    "observe",
    "on",
]
# A hook's cheap, synchronous test of an event: ``when(plugin, event)``.
Wants = Callable[[Any, Event], bool]


@dataclass(frozen=True)
class DigestSection:
    """What one plugin adds to a room's weekly digest."""

    title: str
    text: str
    html: str | None = None
    order: int = 50  # lower comes first


def on(
    *kinds: EventKind, observe: bool = False, when: Wants | None = None
) -> Callable[[HandlerT], HandlerT]:
    """Mark a method ``async def handler(self, ctx: Context) -> None`` as an event hook.

    ``when`` is a cheap, synchronous test ``when(plugin, event) -> bool`` that the core runs
    before it makes anything for the hook (no settings read, no context, no task): a hook that
    wants few events (a DM walk-through, say) costs every other event one function call. It
    must not block or do I/O; the hook itself checks again whatever needs the homeserver.

    ``observe=True`` makes it an observer: it only looks and must be cheap and never send. An
    observer does not make the event *handled*, so the core writes no ``core_handled`` row for
    it; the price is that a message replayed after a crash is observed again, so an observer
    must tolerate seeing an event twice (or keep its own dedup). To count many events, prefer
    :func:`observe`, which is called once per batch.

    A full hook may return ``False`` to say the event was not for it and it did nothing (no
    send, no write): the core then records nothing for it either. Any other return (None
    included) counts as handled, so a replay after a crash skips the event."""

    def decorate(func: HandlerT) -> HandlerT:
        func.__civicbot_events__ = tuple(kinds)  # type: ignore[attr-defined]
        func.__civicbot_observe__ = observe  # type: ignore[attr-defined]
        func.__civicbot_when__ = when  # type: ignore[attr-defined]
        return func

    return decorate


def observe(*kinds: EventKind) -> Callable[[BatchObserver], BatchObserver]:
    """Mark a synchronous method ``def seen(self, events: Sequence[Event]) -> None`` as a batch
    observer: called once per sync batch and room in which the plugin is switched on, with that
    room's new events of ``kinds`` in order (never the bot's own, never notices), as they are
    queued to be handled. It counts, it never sends or awaits, and like any observer it must
    tolerate seeing an event again after a crash. Costs a plain message almost nothing."""

    def decorate(func: BatchObserver) -> BatchObserver:
        func.__civicbot_batch_events__ = tuple(kinds)  # type: ignore[attr-defined]
        return func

    return decorate


BatchObserver = Callable[[Any, Sequence[Event]], None]


class Plugin(Generic[ConfigT]):
    """Base class of every plugin, built-in or installed."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Taken from the type argument (``Plugin[PollsConfig]``) unless set.
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    migrations: ClassVar[Sequence[Migration]] = ()
    # Roles this plugin introduces (e.g. {"councillor": "answers consultations"}).
    roles: ClassVar[dict[str, str]] = {}
    # The templates this plugin renders (``"pong"`` for templates/pong.txt): checked at load,
    # so a package built without its templates refuses to load instead of failing later.
    templates: ClassVar[Sequence[str]] = ()
    # The one built-in plugin that runs rooms (admin) gets ctx.management: the write side of
    # room settings, roles and the audit log. A plugin outside civicbot_plugins never does.
    manages_rooms: ClassVar[bool] = False

    def __init__(self, ctx: PluginContext[ConfigT]):
        self.ctx = ctx
        self.log = ctx.log

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Config" in cls.__dict__:
            return
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is Plugin:
                (model,) = get_args(base)
                if isinstance(model, type) and issubclass(model, PluginConfig):
                    cls.Config = model

    async def setup(self) -> None:
        """Start: re-arm deadlines, warm caches. Raise to refuse loading."""

    async def teardown(self) -> None:
        """Stop: release what ``setup`` took. Deadlines stay in the database."""

    async def caught_up(self) -> None:
        """Called once per start, after the first sync batch has been handled: everything said
        while the bot was down has been seen. Act on overdue deadlines here, not in ``setup``."""

    def command_error(self, error: Exception) -> str | None:
        """What a person reads when one of this plugin's commands raised ``error``.

        Return a message for errors the plugin recognises (its own rule-refusal exceptions, say)
        and the core answers with it as it answers a ``CommandError``; return ``None`` (the
        default) and the error is logged with its traceback and answered with the apology.
        One method instead of wrapping every command (as discord.py's ``cog_command_error``)."""
        return None

    # -- hooks other parts of civicbot call ----------------------------------------------------
    async def digest_section(
        self, room_id: str, since: datetime, until: datetime
    ) -> DigestSection | None:
        """Contribute to the room's weekly digest (activity between ``since`` and ``until``)."""
        return None

    async def personal_digest_section(
        self, user_id: str, since: datetime, until: datetime
    ) -> DigestSection | None:
        """Contribute to one person's own digest, sent to them by direct message: their open
        items across every room (polls they have not voted in, meetings they said they would
        attend, needs they offered help with, consultations they answered that got a reply).
        Only what that person may see; it goes nowhere but their DM."""
        return None

    async def public_section(self, room_id: str) -> PublicSection | None:
        """Contribute to the room's public web page, calendar feed and noticeboard (only for a
        room whose moderators published it, never a DM). Return only what the room already
        shows its members, already filtered: no requester of anything private, no forgotten
        person, names only as the Matrix ids of people who posted it publicly in the room.
        Return everything current (the page decides how much to show)."""
        return None

    async def personal_calendar(self, user_id: str) -> list[bytes] | None:
        """RFC 5545 files of the events ``user_id`` said they are going to, across rooms, for
        their private calendar feed (a secret URL only they were sent)."""
        return None

    async def export_user_data(self, user_id: str) -> dict[str, Any] | None:
        """Everything this plugin stores about ``user_id``, as JSON-able data (for ``!mydata``)."""
        return None

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        """Remove or anonymise ``user_id``'s data, keeping totals (for ``!forget me``)."""
        return None

    async def room_replaced(self, old_room: str, new_room: str) -> None:
        """``old_room`` was upgraded to ``new_room``: move what is still open there (items,
        their deadlines: re-arm the jobs) to the new room. Runs inside the core's transaction
        that moves the room's settings and roles, once per upgrade. Finished items may stay
        in the old room, where their history is."""
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
    def declared_batch_observers(cls) -> list[tuple[tuple[EventKind, ...], str]]:
        found = []
        for attr, member in inspect.getmembers(cls, inspect.isfunction):
            kinds = getattr(member, "__civicbot_batch_events__", ())
            if kinds:
                found.append((kinds, attr))
        return found

    @classmethod
    def wants(cls, attr: str) -> Wants | None:
        """The cheap test declared with ``@on(..., when=...)`` for the hook ``attr``, if any."""
        return getattr(getattr(cls, attr), "__civicbot_when__", None)

    @classmethod
    def observes(cls, attr: str) -> bool:
        """Whether the event hook ``attr`` was declared ``@on(..., observe=True)``."""
        return bool(getattr(getattr(cls, attr), "__civicbot_observe__", False))

    @classmethod
    def implements(cls, hook: str) -> bool:
        return getattr(cls, hook) is not getattr(Plugin, hook)

    @classmethod
    def template_dir(cls) -> Path:
        return Path(inspect.getfile(cls)).parent / "templates"
