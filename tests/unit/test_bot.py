"""The core through a fake transport: dedup, isolation, permissions, mentions, loading."""

from __future__ import annotations

import pytest

from civicbot.core.commands import CommandError, Rest, command
from civicbot.core.context import Context
from civicbot.core.events import EventKind
from civicbot.core.loader import PluginLoadError, discover
from civicbot.core.plugin import Plugin, PluginConfig, observe, on
from civicbot.policy.permissions import Role
from civicbot.testing.harness import MODERATOR, BotHarness
from civicbot.transport import TransportError


class EchoConfig(PluginConfig):
    loud: bool = False


class EchoPlugin(Plugin):
    name = "echo"
    Config = EchoConfig
    migrations = ("CREATE TABLE echo_said (event_id TEXT PRIMARY KEY, text TEXT)",)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.reactions: list[str] = []

    @command("echo", open_text=True, examples=("!echo hello",))
    async def echo(self, ctx: Context, text: Rest) -> None:
        """Say it back."""
        await self.ctx.db.execute("INSERT INTO echo_said VALUES (?, ?)", (ctx.event.event_id, text))
        await ctx.reply(text.upper() if ctx.config.loud else text)

    @command("echo secret", parent=echo, requires=Role.MODERATOR)
    async def secret(self, ctx: Context) -> None:
        """Moderators only."""
        await ctx.reply("the secret")

    @command("fail")
    async def fail(self, ctx: Context) -> None:
        """Raise."""
        raise ValueError("kaboom")

    @command("refuse")
    async def refuse(self, ctx: Context) -> None:
        """A readable error."""
        raise CommandError("That poll is already closed.")

    @command("everyone")
    async def everyone(self, ctx: Context) -> None:
        """Try to ping the room."""
        await ctx.reply("@room wake up", mention_room=True)

    @on(EventKind.REACTION)
    async def reacted(self, ctx: Context) -> None:
        self.reactions.append(ctx.event.content["m.relates_to"]["key"])


def plugins(**extra):
    return {**discover(builtin_only=True), "echo": EchoPlugin, **extra}


async def test_command_is_answered_in_thread_as_a_notice(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        root = await h.say(room, "@ann:test", "hello")
        asked = await h.say(
            room,
            "@ann:test",
            "!echo in a thread",
            **{"m.relates_to": {"rel_type": "m.thread", "event_id": root.event_id}},
        )
        sent = h.transport.sent[-1]
        assert sent.body == "in a thread"
        assert sent.content["msgtype"] == "m.notice"
        assert sent.content["m.mentions"] == {}
        assert sent.content["m.relates_to"]["rel_type"] == "m.thread"
        assert sent.content["m.relates_to"]["event_id"] == root.event_id
        assert sent.content["m.relates_to"]["m.in_reply_to"]["event_id"] == asked.event_id


async def test_the_same_event_twice_is_handled_once(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        event = await h.say(room, "@ann:test", "!echo once")
        await h.bot.handle_batch([event])
        assert h.texts(room) == ["once"]


async def test_replay_after_restart_is_skipped_from_the_database(tmp_path):
    h = await BotHarness.start(tmp_path, plugins())
    room = h.room()
    event = await h.say(room, "@ann:test", "!echo once")
    h = await h.restart()
    await h.bot.handle_batch([event])
    assert h.texts(room) == ["once"]
    assert await h.db.fetchval("SELECT count(*) FROM echo_said") == 1
    await h.close()


async def test_own_messages_and_notices_are_ignored(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await h.say(room, h.transport.user_id, "!echo me")
        await h.send(
            room,
            "@otherbot:test",
            "m.room.message",
            {"msgtype": "m.notice", "body": "!echo notice"},
        )
        assert h.texts(room) == []


async def test_a_failing_handler_apologises_and_the_bot_carries_on(tmp_path, caplog):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!fail")
        assert h.last_text(room).startswith("Sorry, something went wrong")
        assert "kaboom" not in h.last_text(room)
        assert "ValueError: kaboom" in caplog.text
        await h.say(room, "@ann:test", "!echo still here")
        assert h.last_text(room) == "still here"


async def test_command_error_is_shown_as_written(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!refuse")
        assert h.last_text(room) == "That poll is already closed."


async def test_usage_error_shows_usage_and_example(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!echo")
        text = h.last_text(room)
        assert "Usage: !echo <text>" in text
        assert "!echo hello" in text


async def test_subcommand_needs_its_role_and_refuses_politely(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!echo secret")
        assert "only moderators (power level 50" in h.last_text(room)
        await h.say(room, MODERATOR, "!echo secret")
        assert h.last_text(room) == "the secret"


async def test_room_v12_creator_is_a_moderator(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room(room_version="12")
        h.transport.rooms[room].power_levels = {"users": {}}
        await h.say(room, MODERATOR, "!echo secret")  # MODERATOR created the room
        assert h.last_text(room) == "the secret"


async def test_power_level_change_clears_the_cache(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!echo secret")
        assert "only moderators" in h.last_text(room)
        h.transport.rooms[room].power_levels = {"users": {MODERATOR: 100, "@ann:test": 50}}
        await h.send(
            room,
            MODERATOR,
            "m.room.power_levels",
            h.transport.rooms[room].power_levels,
            state_key="",
        )
        await h.say(room, "@ann:test", "!echo secret")
        assert h.last_text(room) == "the secret"


async def test_nobody_makes_the_bot_ping_the_room_unless_they_could(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!everyone")
        sent = h.transport.sent[-1]
        assert sent.content["m.mentions"] == {}
        assert "@room" not in sent.body
        h.transport.rooms[room].power_levels["users"][MODERATOR] = 100
        h.bot.permissions.forget_room(room)
        await h.say(room, MODERATOR, "!everyone")
        assert h.transport.sent[-1].content["m.mentions"] == {"room": True}


async def test_subcommand_words_can_start_a_parent_commands_text(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await h.say(room, MODERATOR, "!echo secret garden tour")
        assert h.last_text(room) == "secret garden tour"


async def test_typo_gets_a_suggestion_but_unknown_words_stay_silent(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!ecko hi")
        assert "Did you mean !echo?" in h.last_text(room)
        count = len(h.texts(room))
        await h.say(room, "@ann:test", "!important notice to all")
        await h.say(room, "@ann:test", "!!!")
        assert len(h.texts(room)) == count


async def test_a_lone_unknown_command_is_pointed_at_help(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!frobnicate")
        assert h.last_text(room) == "I don't know !frobnicate — type !help for what I can do."
        count = len(h.texts(room))
        for writing in ("!", "!!!", "! ", "!x", "!important notice to all", "!2024"):
            await h.say(room, "@ann:test", writing)
        assert len(h.texts(room)) == count


async def test_a_flood_of_unknown_commands_is_limited_like_commands(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        for _ in range(30):
            await h.say(room, "@ann:test", "!frobnicate")
        answers = [t for t in h.texts(room) if t.startswith("I don't know !frobnicate")]
        assert 1 <= len(answers) <= 8  # person_burst
        assert sum(t.startswith("That's a lot of commands at once") for t in h.texts(room)) == 1


async def test_a_room_where_another_bot_shares_the_prefix_can_silence_it(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await h.say(room, MODERATOR, "!config room.unknown_commands false")
        count = len(h.texts(room))
        await h.say(room, "@ann:test", "!frobnicate")
        assert len(h.texts(room)) == count
        await h.say(room, "@ann:test", "!ecko hi")  # a near-miss of ours is still ours
        assert "Did you mean !echo?" in h.last_text(room)


async def test_a_refused_reply_is_logged_as_refused_not_as_an_outage(tmp_path, caplog):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()

        async def refuse(*args, **kwargs):
            raise TransportError("You don't have permission to post that", "M_FORBIDDEN")

        h.transport.send_event = refuse
        await h.say(room, "@ann:test", "!echo hi")
    assert "was refused by the homeserver (M_FORBIDDEN)" in caplog.text
    assert "could not reach the homeserver" not in caplog.text


async def test_disabled_plugin_says_how_to_switch_it_on(tmp_path):
    async with BotHarness.create(tmp_path, plugins(), plugins={"echo": {"enabled": False}}) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!echo hi")
        assert "switched off in this room" in h.last_text(room)
        await h.send(
            room,
            "@ann:test",
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}},
        )
        assert h.bot.plugins["echo"].reactions == []


async def test_room_override_changes_a_plugins_behaviour(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room, other = h.room(), h.room()
        await h.bot.room_settings.set(room, "echo", "loud", True, MODERATOR)
        await h.say(room, "@ann:test", "!echo quiet")
        await h.say(other, "@ann:test", "!echo quiet")
        assert h.last_text(room) == "QUIET"
        assert h.last_text(other) == "quiet"


async def test_reaction_hook_runs(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await h.send(
            room,
            "@ann:test",
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}},
        )
        assert h.bot.plugins["echo"].reactions == ["👍"]


async def test_invites_follow_allowed_inviters(tmp_path):
    from civicbot.core.events import Event

    async with BotHarness.create(
        tmp_path, plugins(), bot={"allowed_inviters": ["@*:good.org"]}
    ) as h:

        def invite(room: str, sender: str) -> Event:
            return Event(
                "",
                room,
                sender,
                EventKind.INVITE,
                "m.room.member",
                0,
                {"membership": "invite"},
                state_key=h.transport.user_id,
            )

        await h.bot.handle_batch(
            [invite("!a:test", "@ann:good.org"), invite("!b:test", "@eve:bad.org")]
        )
        assert h.transport.joined == {"!a:test"}
        assert h.transport.left == {"!b:test"}
        assert "Type !help" in h.last_text("!a:test")


class BrokenSetup(Plugin):
    name = "broken"

    async def setup(self) -> None:
        raise RuntimeError("no database today")


class Squatter(Plugin):
    name = "squatter"
    migrations = ("CREATE TABLE polls_mine (x INTEGER)",)


async def test_loading_is_all_or_nothing_with_a_clear_error(tmp_path):
    with pytest.raises(PluginLoadError, match="plugin 'broken' failed to load: no database today"):
        await BotHarness.start(tmp_path, plugins(broken=BrokenSetup))


async def test_plugins_may_only_create_their_own_tables(tmp_path):
    with pytest.raises(PluginLoadError, match="may only create tables named 'squatter_"):
        await BotHarness.start(tmp_path, plugins(squatter=Squatter))


async def test_two_plugins_cannot_claim_one_command(tmp_path):
    class Twin(Plugin):
        name = "twin"

        @command("echo")
        async def echo(self, ctx: Context) -> None:
            """Clash."""

    with pytest.raises(PluginLoadError, match="both define !echo"):
        await BotHarness.start(tmp_path, plugins(twin=Twin))


class WatcherPlugin(Plugin):
    """An observer, a hook that declines most events, and an observer that fails."""

    name = "watcher"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.seen: list[str] = []
        self.taken: list[str] = []

    @on(EventKind.MESSAGE, observe=True)
    async def count(self, ctx: Context) -> None:
        self.seen.append(ctx.event.body)

    @on(EventKind.MESSAGE, observe=True)
    async def broken(self, ctx: Context) -> None:
        raise RuntimeError("an observer bug")

    @on(EventKind.MESSAGE)
    async def maybe(self, ctx: Context) -> bool:
        if ctx.event.body != "take me":
            return False
        self.taken.append(ctx.event.event_id)
        return True


async def test_observers_and_declining_hooks_record_nothing(tmp_path, caplog):
    async with BotHarness.create(tmp_path, {"watcher": WatcherPlugin}) as h:
        room = h.room()
        await h.say(room, "@ann:test", "just chatting")
        watcher = h.bot.plugins["watcher"]
        assert watcher.seen == ["just chatting"]
        assert "an observer bug" in caplog.text  # logged, contained, never in the room
        assert h.texts(room) == []
        assert await h.db.fetchval("SELECT count(*) FROM core_handled") == 0
        taken = await h.say(room, "@ann:test", "take me")
        assert watcher.taken == [taken.event_id]
        assert await h.db.fetchval("SELECT event_id FROM core_handled") == taken.event_id


class PickyPlugin(Plugin):
    """A hook that says cheaply which events it wants, and a batch observer."""

    name = "picky"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.asked: list[str] = []
        self.taken: list[str] = []
        self.batches: list[list[str]] = []

    def wanted(self, event) -> bool:
        self.asked.append(event.body)
        return event.body.startswith("walk")

    @on(EventKind.MESSAGE, when=lambda self, event: self.wanted(event))
    async def walk(self, ctx: Context) -> None:
        self.taken.append(ctx.event.body)
        await ctx.reply(f"took {ctx.event.body}")

    @observe(EventKind.MESSAGE)
    def seen(self, events) -> None:
        self.batches.append([e.body for e in events])


async def test_a_hook_runs_only_for_what_its_cheap_test_wants(tmp_path):
    async with BotHarness.create(tmp_path, {"picky": PickyPlugin}) as h:
        room = h.room()
        await h.say(room, "@ann:test", "just chatting")
        await h.say(room, "@ann:test", "walk on")
        picky = h.bot.plugins["picky"]
        assert picky.asked == ["just chatting", "walk on"]
        assert picky.taken == ["walk on"]
        assert h.texts(room) == ["took walk on"]
        assert await h.db.fetchval("SELECT count(*) FROM core_handled") == 1


async def test_a_wanted_plain_message_replayed_after_a_crash_is_not_handled_twice(tmp_path):
    async with BotHarness.create(tmp_path, {"picky": PickyPlugin}) as h:
        room = h.room()
        walk = await h.say(room, "@ann:test", "walk on")
        fresh = await h.restart()  # a new process: nothing remembered but the database
        await fresh.bot.handle_batch([walk])
        assert fresh.bot.plugins["picky"].taken == []
        assert h.texts(room) == ["took walk on"]
        await fresh.close()


async def test_a_batch_observer_sees_each_room_once_per_batch_where_it_is_on(tmp_path):
    async with BotHarness.create(tmp_path, {"picky": PickyPlugin}) as h:
        room, other, off = h.room(), h.room(), h.room()
        await h.bot.room_settings.set(off, "picky", "enabled", False, actor=MODERATOR)
        events = [
            h.transport.make_event(
                r, "@ann:test", "m.room.message", {"msgtype": "m.text", "body": b}
            )
            for r, b in ((room, "a"), (other, "b"), (room, "c"), (off, "d"))
        ]
        notice = h.transport.make_event(
            room, "@ann:test", "m.room.message", {"msgtype": "m.notice", "body": "n"}
        )
        await h.bot.handle_batch([*events, notice])
        assert sorted(h.bot.plugins["picky"].batches) == [["a", "c"], ["b"]]
