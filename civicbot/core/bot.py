"""The core: deduplicates events, dispatches commands and hooks, isolates every failure.

Delivery guarantee: an event that made any handler run is recorded in ``core_handled`` right after
its handlers finish, so a replay after a crash skips it. If the crash falls between a handler's
send and that record, the replayed handler re-sends with the same transaction ids
(:class:`~civicbot.core.outgoing.Outgoing`) and the homeserver drops the copy: nobody is answered
twice.
"""

from __future__ import annotations

import asyncio
import difflib
import fnmatch
import logging
from collections import OrderedDict
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from civicbot import __version__, failpoints
from civicbot.config import Settings
from civicbot.core.botinfo import BotFacts, HookResults, PluginInfo
from civicbot.core.commands import (
    Command,
    CommandDeclarationError,
    CommandError,
    CommandIndex,
    UsageError,
)
from civicbot.core.context import Context, CoreServices, PluginContext, RoomManagement
from civicbot.core.dates import warm_up
from civicbot.core.effects import EffectRunner, Say
from civicbot.core.events import Event, EventKind
from civicbot.core.handling import APOLOGY, guarded, quietly, usage_text
from civicbot.core.loader import PluginLoadError, optional_plugins, validate_plugin_config
from civicbot.core.outgoing import Outgoing, txn_key
from civicbot.core.plugin import Plugin, Wants
from civicbot.core.posts import ItemPosts
from civicbot.core.rooms import RoomQueues
from civicbot.core.routing import Routing
from civicbot.core.templates import Templates
from civicbot.core.upgrades import TOMBSTONE, RoomReplacements
from civicbot.policy.floodcontrol import FloodControl
from civicbot.policy.permissions import Permissions
from civicbot.policy.plugin_config import LIMITS, ROOM, WEB, RoomConfig
from civicbot.policy.room_settings import RoomSettings
from civicbot.scheduling.clock import Clock
from civicbot.scheduling.scheduler import Scheduler
from civicbot.storage.core_stores import AuditLog, PersonRecords, RoleStore
from civicbot.storage.database import Database
from civicbot.storage.secret_key import installation_key, keyed_hasher
from civicbot.transport import Transport, TransportError
from civicbot.web import PublicSite

log = logging.getLogger(__name__)

RECENT_IDS = 10_000
HANDLED_RETENTION_S = 14 * 24 * 3600
EFFECT_RETRY = timedelta(minutes=1)


class Bot:
    """Holds a transport (never inherits from one) and the loaded plugins."""

    version = __version__

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        db: Database,
        clock: Clock,
        scheduler: Scheduler,
        plugin_classes: dict[str, type[Plugin]],
    ):
        self.settings = settings
        self.transport = transport
        self.db = db
        self.clock = clock
        self.scheduler = scheduler
        self.plugin_classes = plugin_classes
        self.prefix = settings.bot.command_prefix
        defaults = {
            **settings.plugins,
            LIMITS: settings.limits.model_dump(),
            WEB: settings.web.model_dump(),
        }
        self.room_settings = RoomSettings(
            db, defaults, {n: c.Config for n, c in plugin_classes.items()}
        )
        self.permissions = Permissions(transport, db, self.room_settings)
        self.routing = Routing(transport, self.permissions)
        self.flood = FloodControl(
            self.room_settings, self.permissions, clock, settings.limits, self.prefix
        )
        self.plugins: dict[str, Plugin[Any]] = {}
        self.left_out: dict[str, str] = {}  # optional plugins that could not load, and why
        self.index = CommandIndex({})
        self._hooks: dict[EventKind, list[tuple[Plugin[Any], str, Wants | None]]] = {}
        # Batch observers (``@observe``): one call per batch and room, made as it is queued.
        self._batch_observers: list[tuple[Plugin[Any], frozenset[EventKind], str]] = []
        self._batch_kinds: frozenset[EventKind] = frozenset()
        # Plain messages are not looked up in core_handled when queued (nothing acts on most
        # of them): a hook that does want one looks it up first (see _dispatch).
        self._unchecked: set[str] = set()
        # Observe-only hooks (``@on(..., observe=True)``): they run, but never make an event
        # handled, so they cost no core_handled row.
        self._observers: dict[EventKind, list[tuple[Plugin[Any], str]]] = {}
        self.effects = EffectRunner(db, transport, self.flood.pacer, clock.now)
        self.replacements = RoomReplacements(db, transport, self._move_plugins, self.effects)
        self.effects.redirect = self.replacements.current
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._rooms = RoomQueues(self.handle_event)
        self._started = clock.monotonic()
        self._caught_up = False
        self._warming: asyncio.Task[None] | None = None
        keyed_hash = keyed_hasher(installation_key(settings.bot.data_dir))
        self.site = PublicSite(
            settings.web, transport, db, self.room_settings, keyed_hash, clock,
            self.collect_hook, settings.bot.timezone,
        )  # fmt: skip
        self.flood.pacer.on_send = self.site.touched
        self._core = CoreServices(
            db=db,
            scheduler=scheduler,
            transport=transport,
            room_settings=self.room_settings,
            permissions=self.permissions,
            clock=clock,
            pacer=self.flood.pacer,
            bot=BotFacts(self),
            prefix=self.prefix,
            default_timezone=settings.bot.timezone,
            keyed_hash=keyed_hash,
            public=self.site,
            effects=self.effects,
            posts=ItemPosts(db, self.effects),
            predecessor=self.replacements.predecessor,
        )
        self._management = RoomManagement(
            self.room_settings, RoleStore(db), AuditLog(db), PersonRecords(db)
        )

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Validate, migrate, set up every plugin; undo everything if any one fails."""
        optional = optional_plugins(self.settings.plugins)
        problems: list[str] = []
        for name, cls in list(self.plugin_classes.items()):
            own = self.settings.plugins.get(name, {})
            wrong = validate_plugin_config({name: cls}, {name: own})
            if wrong and name in optional:
                self.leave_out(name, "; ".join(wrong))
            else:
                problems += wrong
        others = {k: v for k, v in self.settings.plugins.items() if k not in self.plugin_classes}
        problems += validate_plugin_config(self.plugin_classes, others, broken=optional)
        if problems:
            raise PluginLoadError("; ".join(problems))
        try:
            self.index = CommandIndex.build(
                {name: cls.declared_commands() for name, cls in self.plugin_classes.items()}
            )
        except CommandDeclarationError as exc:
            raise PluginLoadError(str(exc)) from exc
        await self.site.start()
        started: list[Plugin[Any]] = []
        for name, cls in list(self.plugin_classes.items()):
            plugin = None
            try:
                templates = Templates(cls.template_dir())
                templates.check(cls.templates)
                await self.db.migrate(name, cls.migrations)
                manager = cls.manages_rooms and cls.__module__.startswith("civicbot_plugins.")
                management = self._management if manager else None
                plugin = cls(PluginContext(name, templates, self._core, management))
                await plugin.setup()
            except Exception as exc:
                why = f"plugin '{name}' failed to load: {exc}"
                if plugin is not None:
                    await quietly(plugin.teardown())
                    plugin.ctx.jobs.cancel_all()
                if name in optional:
                    self.leave_out(name, why)
                    continue
                for each in reversed(started):
                    await quietly(each.teardown())
                    each.ctx.jobs.cancel_all()
                self.plugins.clear()
                raise PluginLoadError(why) from exc
            started.append(plugin)
            self.plugins[name] = plugin
        if self.left_out:  # their commands are not answered as if they were there
            self.index = CommandIndex.build(
                {name: type(plugin).declared_commands() for name, plugin in self.plugins.items()}
            )
        for plugin in self.plugins.values():
            for kind, attr in type(plugin).declared_event_hooks():
                if type(plugin).observes(attr):
                    self._observers.setdefault(kind, []).append((plugin, attr))
                else:
                    hook = (plugin, attr, type(plugin).wants(attr))
                    self._hooks.setdefault(kind, []).append(hook)
            for kinds, attr in type(plugin).declared_batch_observers():
                self._batch_observers.append((plugin, frozenset(kinds), attr))
                self._batch_kinds |= frozenset(kinds)
        cutoff = int(self.clock.now().timestamp()) - HANDLED_RETENTION_S
        await self.db.execute("DELETE FROM core_handled WHERE handled_at < ?", (cutoff,))
        await self.effects.purge()
        log.info("loaded plugins: %s", ", ".join(self.plugins))

    def leave_out(self, name: str, why: str) -> None:
        """An optional plugin that cannot load: the bot starts without it, and says so loudly."""
        log.error(
            "PLUGIN LEFT OUT: %s. The bot is running WITHOUT '%s' because plugins.%s.required "
            "is false; mend or remove it",
            why,
            name,
            name,
        )
        self.plugin_classes.pop(name, None)
        self.left_out[name] = why

    async def _move_plugins(self, old_room: str, new_room: str) -> None:
        self.permissions.forget_room(new_room)
        for name, plugin in self.plugins.items():
            if type(plugin).implements("room_replaced"):
                # Inside the core's transaction: a plugin that fails is logged, the others
                # still move (what it left behind stays in the old room).
                try:
                    await plugin.room_replaced(old_room, new_room)
                except Exception:
                    log.exception("plugin %s failed to follow a room upgrade", name)

    async def _retry_effects(self) -> None:
        await self.effects.carry_out_pending()

    async def stop(self) -> None:
        """Finish what is queued, then tear every plugin down and cancel its jobs (their
        deadlines stay in its tables)."""
        await self._rooms.drain()
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
        self.scheduler.cancel("core:effects")
        for plugin in reversed(list(self.plugins.values())):
            await quietly(plugin.teardown())
            plugin.ctx.jobs.cancel_all()

    # -- BotInfo -------------------------------------------------------------------------------
    def uptime_seconds(self) -> float:
        return self.clock.monotonic() - self._started

    def commands(self) -> list[Command]:
        return self.index.unique()

    def plugin_infos(self) -> dict[str, PluginInfo]:
        return {
            name: PluginInfo(name, cls.description, dict(cls.roles), cls.Config)
            for name, cls in self.plugin_classes.items()
        }

    def plugin_names(self) -> list[str]:
        return list(self.plugins)

    async def enabled_plugins(self, room_id: str) -> list[str]:
        return [
            name for name in self.plugins if (await self.room_settings.get(room_id, name)).enabled
        ]

    async def call_hook(self, hook: str, room_id: str | None, *args: Any) -> HookResults:
        found = HookResults([], [])
        for name, plugin in self.plugins.items():
            if not type(plugin).implements(hook):
                continue
            if room_id is not None and not (await self.room_settings.get(room_id, name)).enabled:
                continue
            try:
                result = await getattr(plugin, hook)(*args)
            except Exception:
                log.exception("hook %s of plugin %s failed", hook, name)
                found.failed.append(name)
                continue
            if result is not None:
                found.results.append((name, result))
        return found

    async def collect_hook(self, hook: str, room_id: str | None, *args: Any) -> list[Any]:
        return (await self.call_hook(hook, room_id, *args)).results

    # -- events --------------------------------------------------------------------------------
    async def handle_batch(self, events: list[Event]) -> None:
        """Handle one sync batch and wait for it: rooms concurrently, each room's events in
        order (what :meth:`accept` does, awaited to the end)."""
        await (await self.accept(events))

    async def accept(self, events: list[Event]) -> Awaitable[None]:
        """Queue one sync batch on its rooms' queues (:mod:`civicbot.core.rooms`) and return
        as soon as it is queued, with an awaitable that completes once every event of it has
        been handled. Waits first only while the queues are full (back-pressure on the sync
        loop). After the first batch of a start (the backlog), every plugin hears it has
        caught up."""
        fresh = await self._unhandled(events)
        if self._batch_observers:
            await self._observe_batch(fresh)
        done = await self._rooms.submit(fresh)
        if self._caught_up:
            return done
        self._caught_up = True
        return self._catch_up(done)

    async def _catch_up(self, backlog: Awaitable[None]) -> None:
        await backlog
        # Every room's link servers, in the background: in a city of rooms it is thousands of
        # requests (three a room), which held the first answer back by half a minute.
        self._warming = asyncio.create_task(self.routing.warm(), name="civicbot: via servers")
        # Promises a crash or an outage left unkept (a welcome, a DM, a room) are kept first,
        # then retried every minute until they are.
        await self.effects.carry_out_pending()
        self.scheduler.every("core:effects", EFFECT_RETRY, self._retry_effects)
        for name, plugin in self.plugins.items():
            if type(plugin).implements("caught_up"):
                try:
                    await plugin.caught_up()
                except Exception:
                    log.exception("plugin %s failed after catching up", name)
        log.info("caught up with what came while the bot was away")
        # dateparser's data, loaded in the background so the first odd date in a command does
        # not wait for it; only now, so loading it does not slow the start down (0.3 s of CPU).
        warm_up()

    async def _observe_batch(self, events: list[Event]) -> None:
        me = self.transport.user_id
        kinds = self._batch_kinds
        by_room: dict[str, list[Event]] = {}
        for e in events:
            if e.kind in kinds and e.sender != me:
                by_room.setdefault(e.room_id, []).append(e)
        for room_id, seen in by_room.items():
            for plugin, wanted, attr in self._batch_observers:
                if not (await self.room_settings.get(room_id, plugin.ctx.name)).enabled:
                    continue
                mine = [e for e in seen if e.kind in wanted]
                if not mine:
                    continue
                try:
                    getattr(plugin, attr)(mine)
                except Exception:
                    log.exception("%s observer %s failed in %s", plugin.ctx.name, attr, room_id)

    async def _unhandled(self, events: list[Event]) -> list[Event]:
        me = self.transport.user_id
        prefix = self.prefix
        # Our own events and notices never make us act, so they need no lookup; nor does a
        # plain message here (it is looked up later if a hook turns out to want it).
        ids = []
        for e in events:
            if not e.event_id or e.event_id in self._recent or e.sender == me:
                continue
            if e.kind is EventKind.MESSAGE and not e.body.startswith(prefix):
                self._unchecked.add(e.event_id)
            elif e.kind is not EventKind.NOTICE:
                ids.append(e.event_id)
        done: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self.db.fetchall(
                f"SELECT event_id FROM core_handled WHERE event_id IN ({marks})", chunk
            )
            done.update(row[0] for row in rows)
        return [
            e
            for e in events
            if not e.event_id or (e.event_id not in done and e.event_id not in self._recent)
        ]

    def seen(self, event_id: str) -> bool:
        return event_id in self._recent

    async def handle_event(self, event: Event) -> None:
        """Handle one event; never raises."""
        if event.event_id in self._recent:
            self._unchecked.discard(event.event_id)
            return
        if event.kind is EventKind.MESSAGE and event.body.startswith(self.prefix):
            # A command (the way people change what a room shows; events that hooks act on
            # are caught after they ran). Before too: a page asked for between this event's
            # reply and its end must not be served from what was gathered before it.
            self.site.touched(event.room_id)
        try:
            acted = await self._dispatch(event)
        except Exception:
            log.exception("unexpected failure handling %s", event.event_id)
            acted = True
        self._unchecked.discard(event.event_id)
        self._remember(event.event_id)
        if acted:
            self.site.touched(event.room_id)
        if acted and event.event_id:
            failpoints.hit("after-handle")
            await self.db.execute(
                "INSERT OR IGNORE INTO core_handled (event_id, handled_at) VALUES (?, ?)",
                (event.event_id, int(self.clock.now().timestamp())),
            )

    def _remember(self, event_id: str) -> None:
        if not event_id:
            return
        self._recent[event_id] = None
        if len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)

    async def _dispatch(self, event: Event) -> bool:
        if event.kind is EventKind.POWER_LEVELS or (
            event.kind is EventKind.OTHER and event.type == "m.room.create"
        ):
            self.permissions.forget_room(event.room_id)
        if self.routing.stale(event):
            await self.routing.refresh(event.room_id)
        if event.kind is EventKind.INVITE:
            await self._on_invite(event)
            return False
        if event.type == TOMBSTONE and event.state_key == "":
            # Authorised by the homeserver (a state event needs the power to send it).
            return await self.replacements.on_tombstone(event)
        if event.sender == self.transport.user_id or event.kind is EventKind.NOTICE:
            return False
        acted = False
        for plugin, attr in self._observers.get(event.kind, ()):
            await self._observe(event, plugin, attr)
        if event.kind is EventKind.MESSAGE and event.body.startswith(self.prefix):
            acted = await self._on_command(event)
        for plugin, attr, when in self._hooks.get(event.kind, ()):
            if when is not None and not when(plugin, event):
                continue
            config = await self.room_settings.get(event.room_id, plugin.ctx.name)
            if not config.enabled:
                continue
            if event.event_id in self._unchecked:
                self._unchecked.discard(event.event_id)
                if await self._handled_before(event.event_id):  # replayed after a crash
                    return False
            # Each hook method its own transaction ids: two hooks of one plugin both speak.
            ctx = self._context(event, plugin, config, key_suffix=f"{plugin.ctx.name}:{attr}")
            said: list[Any] = []
            await guarded(
                ctx, _keep(getattr(plugin, attr)(ctx), said), f"{plugin.ctx.name} hook",
                apologise=False,
            )  # fmt: skip
            # A hook that returns False did nothing with the event (it was not for it): no
            # core_handled row. Anything else, a failure included, counts as acted.
            acted = acted or not (said and said[0] is False)
        return acted

    async def _handled_before(self, event_id: str) -> bool:
        return bool(
            await self.db.fetchval("SELECT 1 FROM core_handled WHERE event_id = ?", (event_id,))
        )

    async def _observe(self, event: Event, plugin: Plugin[Any], attr: str) -> None:
        """Run an observer: no timeout task and no apology (it is cheap and never sends), its
        failure logged and contained."""
        config = await self.room_settings.get(event.room_id, plugin.ctx.name)
        if not config.enabled:
            return
        try:
            await getattr(plugin, attr)(self._context(event, plugin, config))
        except Exception:
            log.exception("%s observer %s failed on %s", plugin.ctx.name, attr, event.event_id)

    def _context(
        self, event: Event, plugin: Plugin[Any], config: Any, key_suffix: str = ""
    ) -> Context[Any]:
        out = Outgoing(self.transport, txn_key(event.event_id, key_suffix), self.flood.pacer)
        return Context(event, plugin.ctx, config, out, self.flood.guard)

    async def _on_command(self, event: Event) -> bool:
        text = event.body[len(self.prefix) :]
        candidates = self.index.candidates(text)
        if not candidates:
            await self._suggest(event, text)
            return bool(text.strip())
        first = candidates[0][0]
        first_ctx = await self._command_context(event, first)
        # The flood gate comes first, so a flood is not answered with refusals either.
        verdict = await self.flood.gate(event, first.plugin)
        if verdict is not None:
            if verdict:
                await quietly(first_ctx.reply(verdict))
            return True
        if not first_ctx.config.enabled:  # every candidate is of one plugin
            await quietly(
                first_ctx.reply(
                    f"The {first.plugin} plugin is switched off in this room. "
                    f"A moderator can switch it on with {self.prefix}plugins enable "
                    f"{first.plugin}."
                )
            )
            return True
        # A subcommand of an open-text parent falls back to the parent when its own arguments
        # do not parse ("!poll Close the park early?" is a poll, not "!poll close"). Who may
        # use a command is checked before its arguments are converted: a converter may look
        # items up, and nobody should learn what exists through a command they can't use.
        first_error: UsageError | CommandError | None = None
        for command, rest in candidates:
            if not await self.permissions.has(event.room_id, event.sender, command.requires):
                # Named, but not theirs to use: refused (no fallback to the parent's text).
                who = await self.permissions.describe(event.room_id, command.requires)
                await quietly(
                    first_ctx.reply(f"Sorry, only {who} can use {self.prefix}{command.name}.")
                )
                return True
            ctx = await self._command_context(event, command)
            try:
                args, kwargs = await command.parse(rest, ctx)
            except (UsageError, CommandError) as error:
                first_error = first_error or error
                continue
            except Exception:
                log.exception("reading the arguments of %s failed", command.name)
                await quietly(first_ctx.reply(APOLOGY))
                return True
            break
        else:
            if isinstance(first_error, CommandError):
                await quietly(first_ctx.reply(first_error.message))
            else:
                assert first_error is not None
                await quietly(first_ctx.reply(usage_text(first, first_error, self.prefix)))
            return True
        plugin = self.plugins[command.plugin]
        await guarded(
            ctx,
            command.func(plugin, ctx, *args, **kwargs),
            f"{self.prefix}{command.name}",
            command,
            explain=plugin.command_error,
        )
        return True

    async def _command_context(self, event: Event, command: Command) -> Context[Any]:
        config = await self.room_settings.get(event.room_id, command.plugin)
        return self._context(event, self.plugins[command.plugin], config)

    async def _suggest(self, event: Event, text: str) -> None:
        """A command the bot doesn't know. A near-miss of a real one gets a hint; a message
        that is only a command-like word (``!frobnicate``) is told about ``!help``, unless the
        room's moderators said another bot here shares the prefix (``room.unknown_commands``).
        Anything else stays silent: ``!!!``, a lone ``!``, and ``!important notice to all``
        are people writing, not commands."""
        word = text.split(None, 1)[0].lower() if text.strip() else ""
        if not word.isalpha() or len(word) > 20:
            return
        names = [c.name for c in self.index.unique() if " " not in c.name]
        close = difflib.get_close_matches(word, names, n=1, cutoff=0.75)
        if close:
            answer = (
                f"I don't know {self.prefix}{word}. Did you mean {self.prefix}{close[0]}? "
                f"Type {self.prefix}help to see everything I can do."
            )
            plugin = self.plugins[self.index.by_name[close[0]].plugin]
        elif text.strip().lower() == word and len(word) >= 2:
            room = await self.room_settings.get(event.room_id, ROOM)
            assert isinstance(room, RoomConfig)
            if not room.unknown_commands:
                return
            helps = self.index.by_name.get("help")
            if helps is None:
                return  # nothing better to point at than silence
            answer = f"I don't know {self.prefix}{word} — type {self.prefix}help for what I can do."
            plugin = self.plugins[helps.plugin]
        else:
            return
        ctx = self._context(event, plugin, None)
        await guarded(ctx, ctx.reply(answer), "suggestion")

    async def _on_invite(self, event: Event) -> None:
        inviter = event.sender
        allowed = self.settings.bot.allowed_inviters
        if allowed and not any(fnmatch.fnmatchcase(inviter, pattern) for pattern in allowed):
            log.info(
                "declining invite to %s from %s (not in allowed_inviters)", event.room_id, inviter
            )
            await quietly(self.transport.leave(event.room_id))
            return
        log.info("joining %s (invited by %s)", event.room_id, inviter)
        welcome = (
            f"Hello! I'm civicbot. Type {self.prefix}help to see what I can do here. "
            f"Moderators can choose which tools are switched on with "
            f"{self.prefix}plugins."
        )
        # The welcome is promised before the join: a crash between joining and saying hello
        # (after which no invite comes again) still ends in one hello. One per invitation.
        key = f"welcome:{event.room_id}:{event.ts}"
        await self.effects.promise("core", key, Say(event.room_id, welcome))
        try:
            await self.transport.join(event.room_id)
        except TransportError as exc:
            log.warning("could not join %s: %s", event.room_id, exc)
            await self.effects.cancel("core", key)
            return
        try:
            create = await self.transport.create_event(event.room_id) or {}
            if (create.get("content") or {}).get("type") == "m.space":
                # A space groups rooms; nobody reads its timeline (and Element lets only its
                # admins post there): joined, to see its rooms, but no hello.
                log.info("joined %s, a space: no welcome there", event.room_id)
                await self.effects.cancel("core", key)
                return
        except TransportError as exc:
            log.warning("could not tell whether %s is a space: %s", event.room_id, exc)
        try:
            if await self.replacements.on_joined(event.room_id):
                # The upgrade of a room the bot was already in: no introduction needed.
                await self.effects.cancel("core", key)
                return
        except TransportError as exc:
            log.warning("could not tell whether %s replaces a room: %s", event.room_id, exc)
        failpoints.hit("joined-before-welcome")
        await self.effects.carry_out("core", key)


async def _keep(work: Awaitable[Any], into: list[Any]) -> None:
    into.append(await work)
