"""The plugin API as a plugin author meets it: jobs, typed commands, loading all-or-nothing.

Each test here is a regression test for a trap found by writing a plugin against the old API.
"""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest

from civicbot.core.commands import CommandError, ItemId, command
from civicbot.core.context import Context, JobContext, PluginContext
from civicbot.core.converters import Converter, UsageError
from civicbot.core.events import EventKind
from civicbot.core.loader import PluginLoadError, discover
from civicbot.core.plugin import Plugin, PluginConfig, on
from civicbot.storage.database import Database, MigrationError
from civicbot.testing.harness import BotHarness


class ReminderConfig(PluginConfig):
    hours: int = 24


class Reminders(Plugin[ReminderConfig]):
    name = "reminders"
    failures_left = 0

    async def setup(self) -> None:
        self.runs: list[tuple[str, int]] = []

    def remind(self, room_id: str, key: str, after: timedelta) -> None:
        async def job(ctx: JobContext[ReminderConfig]) -> None:
            self.runs.append((ctx.key, ctx.attempt))
            await ctx.send(room_id, f"reminder {ctx.key}")
            if self.failures_left:
                self.failures_left -= 1
                raise RuntimeError("the job failed after sending")

        self.ctx.jobs.at(key, self.ctx.clock.now() + after, job)


async def test_two_jobs_sending_the_same_text_both_arrive(tmp_path):
    """The old ``PluginContext.send(room, text)`` derived one transaction id for every call, so
    the homeserver kept only the first reminder ever sent that way."""
    async with BotHarness.create(tmp_path, {"reminders": Reminders}) as h:
        room = h.room()
        plugin = h.bot.plugins["reminders"]
        assert isinstance(plugin, Reminders)

        async def same_text(ctx: JobContext[ReminderConfig]) -> None:
            await ctx.send(room, "Bins go out tonight")

        for _ in range(2):  # one key, two due times: this week's bins, next week's
            plugin.ctx.jobs.at("bins", h.clock.now() + timedelta(hours=1), same_text)
            await h.advance(timedelta(hours=2))
        assert h.texts(room).count("Bins go out tonight") == 2


async def test_a_repeating_job_posts_once_per_run(tmp_path):
    async with BotHarness.create(tmp_path, {"reminders": Reminders}) as h:
        room = h.room()
        plugin = h.bot.plugins["reminders"]

        async def weekly(ctx: JobContext[ReminderConfig]) -> None:
            await ctx.send(room, "Weekly: the allotment is open")

        plugin.ctx.jobs.every("weekly", timedelta(days=7), weekly)
        await h.advance(timedelta(days=21))
        assert h.texts(room).count("Weekly: the allotment is open") == 3


def test_a_send_outside_jobs_and_handlers_must_name_its_key():
    import inspect

    key = inspect.signature(PluginContext.send).parameters["key"]
    assert key.kind is inspect.Parameter.KEYWORD_ONLY
    assert key.default is inspect.Parameter.empty


async def test_a_failing_job_is_retried_without_repeating_what_it_sent(tmp_path):
    async with BotHarness.create(tmp_path, {"reminders": Reminders}) as h:
        room = h.room()
        plugin = h.bot.plugins["reminders"]
        assert isinstance(plugin, Reminders)
        plugin.failures_left = 2
        plugin.remind(room, "r1", timedelta(minutes=5))
        await h.advance(timedelta(hours=1))
        assert plugin.runs == [("r1", 0), ("r1", 1), ("r1", 2)]
        # Three runs, one message: the retries reuse the first run's transaction ids.
        assert h.texts(room).count("reminder r1") == 1
        assert h.scheduler.pending() == []


async def test_a_job_that_always_fails_is_given_up_and_the_bot_carries_on(tmp_path, caplog):
    async with BotHarness.create(tmp_path, {"reminders": Reminders}) as h:
        room = h.room()
        plugin = h.bot.plugins["reminders"]
        assert isinstance(plugin, Reminders)
        plugin.failures_left = 99
        plugin.remind(room, "r2", timedelta(minutes=5))
        await h.advance(timedelta(hours=2))
        assert len(plugin.runs) == 4  # the first try and three retries
        assert "giving up after 4 tries" in caplog.text
        plugin.failures_left = 0
        plugin.remind(room, "r3", timedelta(minutes=5))
        await h.advance(timedelta(hours=1))
        assert "reminder r3" in h.texts(room)


async def test_teardown_cancels_a_plugins_jobs(tmp_path):
    h = await BotHarness.start(tmp_path, {"reminders": Reminders})
    try:
        plugin = h.bot.plugins["reminders"]
        assert isinstance(plugin, Reminders)
        plugin.remind(h.room(), "later", timedelta(days=1))
        assert h.scheduler.pending() == ["reminders:later"]
    finally:
        await h.close()
    assert h.scheduler.pending() == []


class Broken(Plugin[PluginConfig]):
    name = "broken"

    async def setup(self) -> None:
        raise RuntimeError("no database today")


class EarlyScheduler(Plugin[PluginConfig]):
    name = "early"

    async def setup(self) -> None:
        async def never(ctx: JobContext[PluginConfig]) -> None:
            raise AssertionError("a job of a failed load ran")

        self.ctx.jobs.at("deadline", self.ctx.clock.now() + timedelta(hours=1), never)


async def test_a_failed_load_leaves_no_jobs_behind(tmp_path):
    from civicbot.config import Settings
    from civicbot.scheduling.clock import FakeClock
    from civicbot.scheduling.scheduler import ManualScheduler
    from civicbot.transport.fake import FakeTransport

    clock = FakeClock()
    scheduler = ManualScheduler(clock)
    db = await Database.open(tmp_path / "db.sqlite3")
    try:
        from civicbot.core.bot import Bot

        bot = Bot(
            Settings(bot={"data_dir": tmp_path}),
            FakeTransport(clock=clock),
            db,
            clock,
            scheduler,
            {"early": EarlyScheduler, "broken": Broken},
        )
        with pytest.raises(PluginLoadError, match="plugin 'broken' failed to load"):
            await bot.start()
        assert scheduler.pending() == []
    finally:
        await db.close()


async def test_a_database_newer_than_the_code_is_refused(tmp_path):
    db = await Database.open(tmp_path / "db.sqlite3")
    try:
        await db.migrate("notes", ["CREATE TABLE notes_a (x)", "CREATE TABLE notes_b (x)"])
        with pytest.raises(MigrationError, match="newer civicbot: notes is at schema version 2"):
            await db.migrate("notes", ["CREATE TABLE notes_a (x)"])
    finally:
        await db.close()


# -- typed commands ----------------------------------------------------------------------------
def test_a_context_imported_only_for_type_checking_does_not_break_the_command(tmp_path):
    """Evaluating every annotation of the handler raised NameError for ``ctx: Context``
    imported under TYPE_CHECKING; only the arguments after ``ctx`` are evaluated now."""
    module = tmp_path / "typing_only_plugin.py"
    module.write_text(
        textwrap.dedent(
            """
            from __future__ import annotations

            from typing import TYPE_CHECKING, Annotated

            from civicbot.core.commands import ItemId, command
            from civicbot.core.plugin import Plugin, PluginConfig

            if TYPE_CHECKING:
                from civicbot.core.context import Context

            NoteId = Annotated[int, ItemId("T")]


            class TypingOnly(Plugin[PluginConfig]):
                name = "typingonly"

                @command("note")
                async def note(self, ctx: Context[PluginConfig], note: NoteId) -> None:
                    '''Show a note.'''
                    await ctx.reply(f"note {note}")
            """
        )
    )
    import importlib.util

    spec = importlib.util.spec_from_file_location("typing_only_plugin", module)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    (declared,) = loaded.TypingOnly.declared_commands()
    assert declared.usage() == "!note <T-number>"


class Notes(Plugin[PluginConfig]):
    name = "notes"
    notes = {1: "bins on tuesday"}


class NoteArg(Converter):
    """An async converter: loads the note an id names, or says there is none."""

    metavar = "T-number"

    async def convert(self, raw: str, ctx: Context[Any]) -> str:
        number = ItemId("T").convert(raw, ctx)
        found = Notes.notes.get(number)
        if found is None:
            raise CommandError(f"There's no note T-{number} here.")
        return found


class NotesWithCommands(Notes):
    @command("note")
    async def note(self, ctx: Context[PluginConfig], note: Annotated[str, NoteArg()]) -> None:
        """Show a note."""
        await ctx.reply(note)

    @command("note count", parent=note)
    async def count(self, ctx: Context[PluginConfig], upto: Annotated[int, ItemId("T")]) -> None:
        """Count up to a note's number."""
        await ctx.reply(" ".join(str(n) for n in range(1, upto + 1)))


async def test_async_converters_load_the_item_or_answer_themselves(tmp_path):
    async with BotHarness.create(tmp_path, {"notes": NotesWithCommands}) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!note T-1")
        assert h.last_text(room) == "bins on tuesday"
        await h.say(room, "@ann:test", "!note T-9")
        assert h.last_text(room) == "There's no note T-9 here."


async def test_a_subcommand_of_a_closed_parent_answers_with_its_own_usage(tmp_path):
    async with BotHarness.create(tmp_path, {"notes": NotesWithCommands}) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!note count T-3")
        assert h.last_text(room) == "1 2 3"
        await h.say(room, "@ann:test", "!note count lots")
        assert "Usage: !note count <T-number>" in h.last_text(room)


def test_a_two_word_command_under_an_existing_one_must_declare_its_parent():
    class Ambiguous(Plugin[PluginConfig]):
        name = "ambiguous"

        @command("meet")
        async def meet(self, ctx: Context[PluginConfig]) -> None:
            """Meet."""

        @command("meet fix")
        async def fix(self, ctx: Context[PluginConfig]) -> None:
            """Fix."""

    from civicbot.core.commands import CommandDeclarationError, CommandIndex

    with pytest.raises(CommandDeclarationError, match=r"@command\(\"meet fix\", parent=meet\)"):
        CommandIndex.build({"ambiguous": Ambiguous.declared_commands()})


def test_usage_errors_from_converters_stay_usage_errors():
    with pytest.raises(UsageError, match="not an id like T-12"):
        ItemId("T").convert("Q-1", None)  # type: ignore[arg-type]


def test_the_config_model_comes_from_the_type_argument():
    assert Reminders.Config is ReminderConfig


# -- templates and packaging ---------------------------------------------------------------------
class Templated(Plugin[PluginConfig]):
    name = "templated"
    templates = ("hello",)

    @classmethod
    def template_dir(cls) -> Path:
        return Path("/nonexistent/templates")


async def test_a_plugin_missing_its_templates_refuses_to_load(tmp_path):
    with pytest.raises(PluginLoadError, match=r"plugin 'templated' failed to load: .*hello\.txt"):
        await BotHarness.start(tmp_path, {"templated": Templated})


async def test_a_broken_template_is_found_at_load(tmp_path):
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "hello.txt").write_text("Hello {{ name ")

    class BrokenTemplate(Templated):
        name = "brokentemplate"

        @classmethod
        def template_dir(cls) -> Path:
            return folder

    with pytest.raises(PluginLoadError, match=r"hello\.txt line 1"):
        await BotHarness.start(tmp_path, {"brokentemplate": BrokenTemplate})


async def test_a_template_naming_an_unknown_filter_is_found_at_load(tmp_path):
    """Templates are only parsed at load (compiled on first use): a filter that does not exist,
    which only compiling used to find, is still caught."""
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "hello.txt").write_text("Hello\n{{ name | shout }}")

    class UnknownFilter(Templated):
        name = "unknownfilter"

        @classmethod
        def template_dir(cls) -> Path:
            return folder

    with pytest.raises(PluginLoadError, match=r"hello\.txt line 2: No filter named 'shout'"):
        await BotHarness.start(tmp_path, {"unknownfilter": UnknownFilter})


def test_the_harness_loads_only_built_ins_unless_a_test_names_more():
    built_in = discover(builtin_only=True)
    assert set(built_in) >= {"help", "ping", "admin", "privacy", "polls"}
    assert all(cls.__module__.startswith("civicbot_plugins.") for cls in built_in.values())


def test_civicbot_ships_type_information():
    import civicbot

    assert (Path(civicbot.__file__).parent / "py.typed").exists()


class Tagger(Plugin[PluginConfig]):
    name = "tagger"

    @command("tag")
    async def tag(self, ctx: Context[PluginConfig], item: str, *tags: str) -> None:
        """Tag an item."""
        await ctx.reply(f"{item}: {', '.join(tags)}")

    @command("tag wipe", parent=tag)
    async def wipe(self, ctx: Context[PluginConfig]) -> None:
        """Inherits the parent's role (everyone here); declared without requires."""
        await ctx.reply("wiped")


async def test_words_after_other_arguments_reach_the_handler(tmp_path):
    """``item: str, *tags: str`` was called with item twice (by name and by position) and
    answered with the apology."""
    async with BotHarness.create(tmp_path, {"tagger": Tagger}) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!tag bike red fast")
        assert h.last_text(room) == "bike: red, fast"


def test_a_subcommand_inherits_its_parents_role():
    from civicbot.policy.roles import Role

    class Guarded(Plugin[PluginConfig]):
        name = "guarded"

        @command("vault", requires=Role.MODERATOR)
        async def vault(self, ctx: Context[PluginConfig]) -> None:
            """Moderators."""

        @command("vault wipe", parent=vault)
        async def wipe(self, ctx: Context[PluginConfig]) -> None:
            """Also moderators, without saying so again."""

    roles = {c.name: c.requires for c in Guarded.declared_commands()}
    assert roles == {"vault": Role.MODERATOR, "vault wipe": Role.MODERATOR}


def test_an_argument_type_no_converter_reads_is_refused_when_declared():
    from civicbot.core.commands import CommandDeclarationError

    with pytest.raises(CommandDeclarationError, match="which no converter reads"):

        @command("colour")
        async def colour(self: Any, ctx: Any, which: Literal["red", "blue"]) -> None:
            """Pick."""


class Buggy(Converter):
    def convert(self, raw: str, ctx: Context[Any]) -> int:
        raise ValueError("a bug, not bad input")


class WithBuggy(Plugin[PluginConfig]):
    name = "withbuggy"

    @command("bug")
    async def bug(self, ctx: Context[PluginConfig], n: Annotated[int, Buggy()]) -> None:
        """Never runs."""


async def test_a_bug_in_a_converter_is_an_apology_not_a_usage_hint(tmp_path, caplog):
    async with BotHarness.create(tmp_path, {"withbuggy": WithBuggy}) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!bug 3")
        assert h.last_text(room).startswith("Sorry, something went wrong")
        assert "a bug, not bad input" in caplog.text


class TwoHooks(Plugin[PluginConfig]):
    name = "twohooks"

    @on(EventKind.MESSAGE)
    async def first(self, ctx: Context[PluginConfig]) -> None:
        if ctx.event.body == "hooks?":
            await ctx.reply("first hook")

    @on(EventKind.MESSAGE)
    async def second(self, ctx: Context[PluginConfig]) -> None:
        if ctx.event.body == "hooks?":
            await ctx.reply("second hook")


async def test_two_hooks_of_one_plugin_both_speak(tmp_path):
    """Both hook contexts derived the same transaction ids, so the homeserver kept one."""
    async with BotHarness.create(tmp_path, {"twohooks": TwoHooks}) as h:
        room = h.room()
        await h.say(room, "@ann:test", "hooks?")
        assert sorted(h.texts(room)) == ["first hook", "second hook"]


async def test_a_command_of_a_switched_off_plugin_converts_nothing(tmp_path):
    """The converter (which may look items up) never runs: the reply says the plugin is off."""
    async with BotHarness.create(
        tmp_path, {"notes": NotesWithCommands, **discover(builtin_only=True)}
    ) as h:
        room = h.room()
        h.clock.advance(timedelta(seconds=10))
        await h.say(room, "@mod:test", "!plugins disable notes")
        h.clock.advance(timedelta(seconds=10))
        await h.say(room, "@ann:test", "!note T-9")
        assert "switched off in this room" in h.last_text(room)


class RawSender(Plugin[PluginConfig]):
    name = "rawsender"

    @command("raw")
    async def raw(self, ctx: Context[PluginConfig]) -> None:
        """Send a raw message event."""
        await ctx.send_event(ctx.room_id, "m.room.message", {"msgtype": "m.text", "body": "@room!"})


async def test_a_raw_message_event_gets_the_mention_limits_too(tmp_path):
    async with BotHarness.create(tmp_path, {"rawsender": RawSender}) as h:
        room = h.room()
        await h.say(room, "@mod:test", "!raw")  # even a moderator's raw event pings nobody
        sent = h.transport.sent[-1].content
        assert sent["m.mentions"] == {}
        assert "@room" not in sent["body"]


def test_message_text_cannot_be_smuggled_in_extra():
    import asyncio

    from civicbot.core.events import Message
    from civicbot.core.outgoing import Outgoing
    from civicbot.policy.limits import SendPacer
    from civicbot.transport.fake import FakeTransport

    out = Outgoing(FakeTransport(), "k", SendPacer())
    message = Message("hello", extra={"body": "@room hello"})
    with pytest.raises(ValueError, match="set body through Message"):
        asyncio.run(out.message("!r:test", message, may_ping_room=False))


async def test_a_plugin_context_holds_no_password_secret_or_write_stores(tmp_path):
    """A plugin reads room settings but can't change them (or grant roles): that is the admin
    plugin's, the one built-in that declares manages_rooms. The bot facts are facts only."""
    settings = {"matrix": {"password": "hunter2-never-for-plugins"}}
    async with BotHarness.create(
        tmp_path, {"notes": NotesWithCommands, **discover(builtin_only=True)}, **settings
    ) as h:
        notes = h.bot.plugins["notes"].ctx
        assert notes.management is None
        assert not hasattr(notes.room_settings, "set")
        assert not hasattr(notes.bot, "settings") and not hasattr(notes.bot, "flood")
        assert "hunter2" not in repr(vars(notes)) and "hunter2" not in repr(vars(notes.bot))
        secret = (tmp_path / "secret.key").read_text().strip()
        assert secret not in repr(vars(notes)) + repr(vars(notes._core))
        assert h.bot.plugins["admin"].ctx.management is not None


class Pretender(Plugin[PluginConfig]):
    name = "pretender"
    manages_rooms = True  # a third-party plugin can say so; it is not believed


async def test_only_a_built_in_plugin_gets_to_manage_rooms(tmp_path):
    async with BotHarness.create(tmp_path, {"pretender": Pretender}) as h:
        assert h.bot.plugins["pretender"].ctx.management is None


class ShedClosed(Exception):
    """A plugin's own refusal, with a message for the person."""


class Shed(Plugin[PluginConfig]):
    name = "shed"

    def command_error(self, error: Exception) -> str | None:
        return str(error) if isinstance(error, ShedClosed) else None

    @command("borrow")
    async def borrow(self, ctx: Context[PluginConfig]) -> None:
        """Borrow a tool."""
        raise ShedClosed("The shed is closed on Sundays: try !borrow tomorrow.")

    @command("lend")
    async def lend(self, ctx: Context[PluginConfig]) -> None:
        """Lend a tool."""
        raise KeyError("a bug")


async def test_a_plugins_own_errors_are_answered_by_its_error_hook(tmp_path, caplog):
    async with BotHarness.create(tmp_path, {"shed": Shed}) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!borrow")
        assert h.last_text(room) == "The shed is closed on Sundays: try !borrow tomorrow."
        assert "Traceback" not in caplog.text
        await h.say(room, "@ann:test", "!lend")  # anything it doesn't claim stays a bug
        assert h.last_text(room).startswith("Sorry, something went wrong")
        assert "KeyError" in caplog.text
