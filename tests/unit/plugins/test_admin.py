"""The admin plugin through the fake transport: !plugins, !config, !role(s), !audit."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Literal

import pytest
from civicbot_plugins.admin.plugin import AdminPlugin
from civicbot_plugins.help.plugin import HelpPlugin
from civicbot_plugins.ping.plugin import PingPlugin
from civicbot_plugins.privacy.plugin import PrivacyPlugin
from pydantic import Field, SecretStr

from civicbot.core.commands import Rest, command
from civicbot.core.context import Context
from civicbot.core.plugin import Plugin, PluginConfig
from civicbot.testing.harness import MODERATOR, BotHarness

ANN, BOB, BOSS = "@ann:test", "@bob:test", "@boss:test"


class CouncilConfig(PluginConfig):
    reminder_hours: int = Field(24, ge=1, le=168)
    greeting: str = "hello"
    watchers: list[str] = Field(default_factory=list)
    style: Literal["short", "long"] = "short"
    api_key: SecretStr = SecretStr("s3cret")


class CouncilPlugin(Plugin):
    """A plugin for tests: a declared role, settings of several types, and loud commands."""

    name = "council"
    description = "Consultations (tests only)."
    Config = CouncilConfig
    roles = {"councillor": "answers consultations"}

    @command("answer", requires="councillor")
    async def answer(self, ctx: Context) -> None:
        """Answer a consultation."""
        await ctx.reply(f"answered ({ctx.config.reminder_hours}h, {ctx.config.style})")

    @command("say")
    async def say(self, ctx: Context, text: Rest) -> None:
        """Say it back, mentioning every id in it."""
        ids = tuple(word for word in text.split() if word.startswith("@") and ":" in word)
        await ctx.reply(text, mentions=ids)

    @command("shout")
    async def shout(self, ctx: Context, text: Rest) -> None:
        """Say it back to the whole room."""
        await ctx.reply(text, mention_room=True)

    @command("chatty")
    async def chatty(self, ctx: Context) -> None:
        """Answer five times."""
        for n in range(5):
            await ctx.reply(f"part {n}")


def plugin_classes(**extra: type[Plugin]) -> dict[str, type[Plugin]]:
    return {
        "help": HelpPlugin,
        "ping": PingPlugin,
        "admin": AdminPlugin,
        "privacy": PrivacyPlugin,
        "council": CouncilPlugin,
        **extra,
    }


def harness(tmp_path, **settings):
    return BotHarness.create(tmp_path, plugin_classes(), **settings)


async def ask(h: BotHarness, room: str, sender: str, text: str) -> str:
    """Say something a human would, a few seconds after the last thing (no flood)."""
    h.clock.advance(timedelta(seconds=10))
    before = len(h.texts(room))
    await h.say(room, sender, text)
    new = h.texts(room)[before:]
    return "\n".join(new)


def staff_room(h: BotHarness, **kwargs) -> str:
    return h.room(members=[ANN, BOB, BOSS], power={BOSS: 100}, **kwargs)


async def overrides(h: BotHarness, room: str) -> dict[str, object]:
    rows = await h.db.fetchall(
        "SELECT plugin, key, value FROM core_room_settings WHERE room_id = ?", (room,)
    )
    return {f"{r['plugin']}.{r['key']}": json.loads(r["value"]) for r in rows}


# -- who may -------------------------------------------------------------------------------------
async def test_residents_are_refused_politely_and_nothing_changes(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        for text in (
            "!config council.reminder_hours 48",
            "!config",
            "!plugins disable ping",
            "!role grant @bob:test councillor",
            "!audit",
        ):
            reply = await ask(h, room, ANN, text)
            assert reply.startswith("Sorry, only moderators (power level 50 or more"), reply
        assert await overrides(h, room) == {}
        assert await h.db.fetchval("SELECT count(*) FROM core_roles") == 0


async def test_a_room_v12_creator_is_a_moderator_without_a_listed_power_level(tmp_path):
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN], room_version="12")
        h.transport.rooms[room].power_levels = {"users": {}}  # creators are not listed in v12
        reply = await ask(h, room, MODERATOR, "!config council.reminder_hours 48")
        assert reply.startswith("Done: council.reminder_hours is now 48 here")


# -- !plugins ------------------------------------------------------------------------------------
async def test_plugins_lists_switches_and_protects_the_admin_tools(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        listing = await ask(h, room, MODERATOR, "!plugins")
        assert "on   council — Consultations (tests only)." in listing
        assert "Switched ping off here" in await ask(h, room, MODERATOR, "!plugins disable ping")
        assert "switched off in this room" in await ask(h, room, ANN, "!ping")
        assert "off  ping" in await ask(h, room, MODERATOR, "!plugins")
        assert "already switched off" in await ask(h, room, MODERATOR, "!plugins disable ping")
        assert "Switched ping on" in await ask(h, room, MODERATOR, "!plugins enable PING")
        assert "Pong" in await ask(h, room, ANN, "!ping")
        typo = await ask(h, room, MODERATOR, "!plugins enable pnig")
        assert "There's no plugin called 'pnig'. Did you mean ping?" in typo
        for name in ("admin", "privacy"):
            refused = await ask(h, room, MODERATOR, f"!plugins disable {name}")
            assert "can't be switched off from the chat" in refused
            refused = await ask(h, room, MODERATOR, f"!config {name}.enabled off")
            assert (
                refused
                == f"Only whoever runs the bot can change {name}.enabled, in the bot's config file."
            )
        usage = await ask(h, room, MODERATOR, "!plugins enable")
        assert "Usage: !plugins enable <plugin>" in usage
        assert (await overrides(h, room)) == {"ping.enabled": True}


async def test_operator_default_off_can_be_switched_on_by_a_room(tmp_path):
    async with harness(tmp_path, plugins={"council": {"enabled": False}}) as h:
        room, other = staff_room(h), staff_room(h)
        assert "switched off in this room" in await ask(h, room, ANN, "!say hi")
        await ask(h, room, MODERATOR, "!plugins enable council")
        assert await ask(h, room, ANN, "!say hi") == "hi"
        assert "switched off" in await ask(h, other, ANN, "!say hi")


# -- !config -------------------------------------------------------------------------------------
async def test_config_shows_defaults_and_marks_overrides(tmp_path):
    async with harness(tmp_path, plugins={"council": {"reminder_hours": 12}}) as h:
        room = staff_room(h)
        await ask(h, room, MODERATOR, "!config council.greeting good morning, street")
        everything = await ask(h, room, MODERATOR, "!config")
        assert "council.reminder_hours = 12\n" in everything  # the operator's default
        assert "council.greeting = good morning, street *  (default: hello)" in everything
        assert "room.timezone = none" in everything
        assert "limits.send_burst = 20  (set by whoever runs the bot)" in everything
        one = await ask(h, room, MODERATOR, "!config council")
        assert "council.reminder_hours = 12  — a whole number from 1 to 168" in one
        assert "council.style = short  — one of: short, long" in one
        assert "room.timezone" not in one
        setting = await ask(h, room, MODERATOR, "!config council.greeting")
        assert setting.startswith("council.greeting is good morning, street here (changed here")
        assert "!config reset council.greeting" in setting


async def test_config_sets_values_of_every_type_validated_by_the_plugins_model(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        for text in (
            "!config council.reminder_hours 48",
            "!config council.style long",
            "!config council.watchers @ann:test, @bob:test",
            "!config room.timezone Europe/Paris",
            "!config council greeting hi there",  # as typed on a phone
            "!config Council.Reminder-Hours 72",
        ):
            assert (await ask(h, room, MODERATOR, text)).startswith("Done:"), text
        assert await overrides(h, room) == {
            "council.reminder_hours": 72,
            "council.style": "long",
            "council.watchers": [ANN, BOB],
            "council.greeting": "hi there",
            "room.timezone": "Europe/Paris",
        }
        await h.bot.room_settings.get(room, "council")
        assert await ask(h, room, BOSS, "!answer") == "answered (72h, long)"


async def test_a_wrong_value_names_what_is_accepted_and_stores_nothing(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        wrong = await ask(h, room, MODERATOR, "!config council.reminder_hours forty")
        assert wrong == (
            "I couldn't change council.reminder_hours: 'forty' isn't the right kind of value.\n"
            "It takes a whole number from 1 to 168. For example: "
            "!config council.reminder_hours 24"
        )
        big = await ask(h, room, MODERATOR, "!config council.reminder_hours 500")
        assert "less than or equal to 168" in big
        style = await ask(h, room, MODERATOR, "!config council.style medium")
        assert "It takes one of: short, long" in style
        zone = await ask(h, room, MODERATOR, "!config room.timezone Mars/Olympus")
        assert "IANA time zone" in zone and "!config room.timezone Europe/London" in zone
        typo = await ask(h, room, MODERATOR, "!config council.remindr_hours 4")
        assert "Did you mean council.reminder_hours?" in typo
        nothing = await ask(h, room, MODERATOR, "!config nothing.here 1")
        assert "There's no plugin called 'nothing'" in nothing
        operator = await ask(h, room, MODERATOR, "!config limits.sends_per_second 1000")
        assert operator == (
            "Only whoever runs the bot can change limits.sends_per_second, "
            "in the bot's config file."
        )
        huge = await ask(h, room, MODERATOR, "!config council.greeting " + "x" * 5000)
        assert "too long" in huge
        assert await overrides(h, room) == {}
        assert not any("Sorry, something went wrong" in t for t in h.texts(room))


async def test_reset_one_setting_or_a_whole_plugin(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        await ask(h, room, MODERATOR, "!config council.reminder_hours 48")
        await ask(h, room, MODERATOR, "!config council.style long")
        back = await ask(h, room, MODERATOR, "!config reset council.reminder_hours")
        assert back == "council.reminder_hours is back to the default here: 24."
        again = await ask(h, room, MODERATOR, "!config reset council.reminder_hours")
        assert "wasn't changed here" in again
        assert "All council settings are back" in await ask(
            h, room, MODERATOR, "!config reset council"
        )
        assert await overrides(h, room) == {}
        assert "Type !config reset <plugin>.<setting>" in await ask(
            h, room, MODERATOR, "!config reset"
        )


async def test_settings_survive_a_restart(tmp_path):
    h = await BotHarness.start(tmp_path, plugin_classes())
    room = staff_room(h)
    await ask(h, room, MODERATOR, "!config council.reminder_hours 48")
    await ask(h, room, MODERATOR, "!plugins disable ping")
    h = await h.restart()
    try:
        assert await ask(h, room, BOSS, "!answer") == "answered (48h, short)"
        assert "switched off in this room" in await ask(h, room, ANN, "!ping")
    finally:
        await h.close()


# -- who counts as a moderator -----------------------------------------------------------------
async def test_permission_thresholds_need_an_admin_and_cannot_lock_them_out(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        refused = await ask(h, room, MODERATOR, "!config room.moderator_level 0")
        assert refused.startswith("Sorry, only admins (power level 100 or more")
        assert "only admins" in await ask(h, room, MODERATOR, "!config reset room")
        assert "Done:" in await ask(h, room, BOSS, "!config room.role_levels.councillor 10")
        assert "there's no role called 'mayor'" in await ask(
            h, room, BOSS, "!config room.role_levels.mayor 10"
        )
        h.transport.rooms[room].power_levels["users"][ANN] = 10
        h.bot.permissions.forget_room(room)
        assert await ask(h, room, ANN, "!answer") == "answered (24h, short)"
        assert "only admins" in await ask(h, room, MODERATOR, "!config room.admin_level 60")
        assert (await ask(h, room, BOSS, "!config room.admin_level 90")).startswith("Done:")
        h.transport.rooms[room].power_levels["users"][BOSS] = 90
        h.bot.permissions.forget_room(room)
        self_demotion = await ask(h, room, BOSS, "!config room.admin_level 95")
        assert "take away your own admin rights" in self_demotion
        assert "Removed room.role_levels.councillor" in await ask(
            h, room, BOSS, "!config reset room.role_levels.councillor"
        )
        assert "only moderators" in await ask(h, room, ANN, "!config")


# -- roles ---------------------------------------------------------------------------------------
async def test_granting_a_declared_role_lets_a_resident_act_and_revoking_stops_them(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        assert "only councillors" in await ask(h, room, ANN, "!answer")
        granted = await ask(h, room, MODERATOR, "!role grant @ann:test Councillor")
        assert (
            granted
            == "Granted the councillor role to @ann:test in this room. They can now use !answer."
        )
        assert "already has" in await ask(h, room, MODERATOR, "!role grant @ann:test councillor")
        assert await ask(h, room, ANN, "!answer") == "answered (24h, short)"
        roles = await ask(h, room, MODERATOR, "!roles")
        assert (
            "councillor: power level 50 or more (same as moderators) — answers consultations"
            in roles
        )
        assert "@ann:test: councillor (by @mod:test, Mon 23 Nov 2026" in roles
        other = staff_room(h)
        assert "only councillors" in await ask(h, other, ANN, "!answer")  # roles are per room
        assert "Took the councillor role back" in await ask(
            h, room, MODERATOR, "!role revoke @ann:test councillor"
        )
        assert "only councillors" in await ask(h, room, ANN, "!answer")
        assert "doesn't have a granted councillor role" in await ask(
            h, room, MODERATOR, "!role revoke @ann:test councillor"
        )


async def test_role_mistakes_say_what_to_type(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        bad_id = await ask(h, room, MODERATOR, "!role grant ann councillor")
        assert bad_id.startswith("'ann' is not a Matrix id; write it like @name:example.org.")
        assert "Usage: !role grant <@user:server> <role>" in bad_id
        missing = await ask(h, room, MODERATOR, "!role grant @ann:test")
        assert missing.startswith("Usage: !role grant <@user:server> <role>")
        unknown = await ask(h, room, MODERATOR, "!role grant @ann:test mayor")
        assert (
            "'mayor' is an unknown role: no plugin installed here declares it. "
            "The roles are admin, councillor, moderator" in unknown
        )
        assert "!role grant @name:server <role>" in await ask(h, room, MODERATOR, "!role")
        assert "only admins" in await ask(h, room, MODERATOR, "!role grant @ann:test moderator")
        assert "Granted" in await ask(h, room, BOSS, "!role grant @ann:test moderator")
        assert "Done:" in await ask(h, room, ANN, "!config council.style long")  # granted mod
        assert "Granted" in await ask(h, room, ANN, "!role grant @bob:test councillor")


# -- !audit --------------------------------------------------------------------------------------
async def test_audit_shows_who_changed_what_and_when_newest_first(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        assert "Nobody has changed" in await ask(h, room, MODERATOR, "!audit")
        await ask(h, room, MODERATOR, "!config council.reminder_hours 48")
        await ask(h, room, MODERATOR, "!plugins disable ping")
        await ask(h, room, MODERATOR, "!role grant @ann:test councillor")
        await ask(h, room, MODERATOR, "!config reset council.reminder_hours")
        await ask(h, room, BOSS, "!role revoke @ann:test councillor")
        audit = await ask(h, room, MODERATOR, "!audit")
        lines = audit.splitlines()
        assert lines[0].startswith("The last 5 changes")
        assert (
            lines[1] == "  Mon 23 Nov 2026 09:01 UTC  @boss:test revoked councillor from @ann:test"
        )
        assert "@mod:test reset council.reminder_hours back to 24 (was 48)" in lines[2]
        assert "@mod:test granted councillor to @ann:test" in lines[3]
        assert "@mod:test set ping.enabled to off (was on)" in lines[4]
        assert "@mod:test set council.reminder_hours to 48 (was 24)" in lines[5]
        assert len((await ask(h, room, MODERATOR, "!audit 2")).splitlines()) == 3
        assert "should be a whole number" in await ask(h, room, MODERATOR, "!audit lots")
        other = staff_room(h)
        assert "Nobody has changed" in await ask(h, other, MODERATOR, "!audit")


async def test_the_room_itself_cannot_be_switched_off(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        reply = await ask(h, room, MODERATOR, "!config room.enabled off")
        assert reply.startswith("The room itself is always on.")
        assert "room.enabled" not in await ask(h, room, MODERATOR, "!config room")


async def test_a_stored_value_a_newer_model_rejects_is_dropped_alone(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        await ask(h, room, MODERATOR, "!config council.style long")
        for key, value in (("reminder_hours", "9999"), ("gone", "1"), ("greeting", "{bad")):
            await h.db.execute(
                "INSERT INTO core_room_settings VALUES (?, 'council', ?, ?, 'x', 0)",
                (room, key, value),
            )
        h.bot.room_settings.invalidate()
        config = await h.bot.room_settings.get(room, "council")
        assert (config.style, config.reminder_hours, config.greeting) == ("long", 24, "hello")


async def test_secrets_are_never_shown_in_a_room_nor_set_from_one(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        shown = await ask(h, room, MODERATOR, "!config council")
        assert "council.api_key = **********  (set by whoever runs the bot)" in shown
        assert "s3cret" not in shown
        refused = await ask(h, room, MODERATOR, "!config council.api_key hunter2")
        assert refused.startswith("Only whoever runs the bot can change council.api_key")
        assert await overrides(h, room) == {}


async def _admin_at_90(h: BotHarness) -> str:
    room = staff_room(h)
    assert (await ask(h, room, BOSS, "!config room.admin_level 90")).startswith("Done:")
    h.transport.rooms[room].power_levels["users"][BOSS] = 90
    h.bot.permissions.forget_room(room)
    return room


@pytest.mark.parametrize(
    "command",
    [
        "!config room.moderator_level 95",
        "!config room.role_levels.moderator 100",
        "!config room.role_levels.admin 100",
        "!config room.admin_level 95",
        "!config reset room.admin_level",
        "!config reset room",
    ],
)
async def test_no_setting_can_lock_the_admins_and_moderators_out(tmp_path, command):
    """Found in review: an admin below 100 could raise the levels past everyone, or reset the
    admin level back to 100, and nothing in the chat could undo it."""
    async with harness(tmp_path) as h:
        room = await _admin_at_90(h)
        refused = await ask(h, room, BOSS, command)
        assert not refused.startswith("Done:") and "back to the default" not in refused
        assert (await ask(h, room, BOSS, "!roles")).startswith("Roles in this room")
        assert (await ask(h, room, MODERATOR, "!plugins")).startswith("Plugins in this room")


async def test_an_admin_by_power_level_is_a_moderator_whatever_the_thresholds(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        await h.bot.room_settings.set(room, "room", "moderator_level", 100, BOSS)
        h.transport.rooms[room].power_levels["users"][BOSS] = 100
        assert (await ask(h, room, BOSS, "!plugins")).startswith("Plugins in this room")


async def test_a_zone_name_is_read_whatever_its_case(tmp_path):
    # Issue 22 §5: "!config room.timezone europe/london" was refused while "!tz europe/warsaw"
    # was accepted; both read zones through the engine's zone_name now.
    async with harness(tmp_path) as h:
        room = staff_room(h)
        lower = await ask(h, room, MODERATOR, "!config room.timezone europe/london")
        assert lower.startswith("Done:"), lower
        assert await overrides(h, room) == {"room.timezone": "Europe/London"}
