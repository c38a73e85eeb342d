"""Moderators configure their room from the chat, against a real Synapse and a real bot process:
permissions (room version 12 creators included), restarts, floods and `!forget me`."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Any

from tests.integration.conftest import (
    BotProcess,
    is_for,
    is_notice_from,
    reply_target,
    room_with_bot,
)


def replies_to(event_id: str, bot: BotProcess):
    def check(event: dict[str, Any]) -> bool:
        return is_notice_from(bot.user_id)(event) and reply_target(event) == event_id

    return check


async def answer(person, room: str, text: str, bot: BotProcess) -> dict[str, Any]:
    """Send a command and return the bot's answer to it (the whole event)."""
    person.mark()
    asked = await person.send_text(room, text)
    return await person.wait_for(room, replies_to(asked, bot), timeout=30)


async def ask(person, room: str, text: str, bot: BotProcess) -> str:
    """Send a command and return the body of the bot's answer to it."""
    return str((await answer(person, room, text, bot))["content"]["body"])


async def test_residents_are_refused_moderators_configure_and_it_survives_a_restart(
    residents, bots
):
    mod, ann, bob = await residents("mod"), await residents("ann"), await residents("bob")
    bot = await bots()
    room = await room_with_bot(mod, bot, ann, bob, room_version="10")
    await mod.set_power_level(room, bob.user_id, 50)  # a moderator by power level
    refused = await ask(ann, room, "!config ping.enabled off", bot)
    assert refused.startswith("Sorry, only moderators (power level 50 or more")
    done = await ask(bob, room, "!config ping.enabled off", bot)
    assert done.startswith("Done: ping.enabled is now off here")
    wrong = await ask(bob, room, "!config limits.cooldown_seconds soon", bot)
    assert "It takes a whole number from 1 to 86400" in wrong

    await bot.stop()
    await bot.start()

    assert "switched off in this room" in await ask(ann, room, "!ping", bot)
    shown = await ask(bob, room, "!config ping", bot)
    assert "ping.enabled = off *  (default: on)" in shown
    audit = await ask(bob, room, "!audit", bot)
    assert f"{bob.user_id} set ping.enabled to off (was on)" in audit
    assert "Traceback" not in bot.log_text()


async def test_a_room_version_12_creator_counts_as_a_moderator(residents, bots):
    founder, ann = await residents("founder"), await residents("ann")
    bot = await bots()
    room = await room_with_bot(founder, bot, ann, room_version="12")
    levels = await founder.get_state(room, "m.room.power_levels")
    assert founder.user_id not in levels.get("users", {})  # v12 creators are not listed
    done = await ask(founder, room, "!config room.timezone Europe/Paris", bot)
    assert done.startswith("Done: room.timezone is now Europe/Paris here")
    assert "only moderators" in await ask(ann, room, "!config room.timezone UTC", bot)


async def test_a_flood_of_100_commands_gets_one_notice_and_no_crash(residents, bots):
    mod, ann = await residents("mod"), await residents("ann")
    # The slowest refill there is (one command a minute), so the count below can't depend on
    # how fast a loaded machine gets through the flood.
    bot = await bots(limits={"person_per_minute": 1})
    room = await room_with_bot(mod, bot, ann)
    ann.mark()
    flood = await asyncio.gather(*(ann.send_text(room, "!ping") for _ in range(100)))
    # The bot handles a room's events in order: once a later command is answered, every
    # command of the flood has been dealt with.
    await answer(mod, room, "!ping", bot)
    # Read from the room's history on the homeserver, everything the bot said there (a sync
    # during the flood is not what this counts).
    answers = [
        event["content"]["body"]
        for event in reversed(await ann.messages(room, limit=500))
        if any(replies_to(asked, bot)(event) for asked in flood)
    ]
    notices = [a for a in answers if a.startswith("That's a lot of commands at once!")]
    assert len(notices) == 1
    assert len(answers) == 8 + 1  # the burst, then the one notice
    assert bot.running
    assert "Traceback" not in bot.log_text()


def table_traces(database: Path, *needles: str) -> list[str]:
    """Every table cell (any text column) that holds one of ``needles``."""
    found = []
    with sqlite3.connect(database) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            for column in columns:
                for (value,) in db.execute(f'SELECT "{column}" FROM "{table}"'):
                    text = value.decode(errors="replace") if isinstance(value, bytes) else value
                    if isinstance(text, str) and any(needle in text for needle in needles):
                        found.append(f"{table}.{column}: {text[:80]}")
    return found


async def test_mydata_then_forget_me_leaves_no_trace_in_any_table(residents, bots):
    mod, ann = await residents("mod"), await residents("ann")
    bot = await bots()
    room = await room_with_bot(mod, bot, ann)
    localpart = re.match(r"@([^:]+):", ann.user_id).group(1)  # type: ignore[union-attr]

    # Ann moderates for a while: a granted role, a setting she changed, a role she granted.
    assert "Granted" in await ask(mod, room, f"!role grant {ann.user_id} admin", bot)
    assert "Done:" in await ask(ann, room, "!config ping.enabled off", bot)
    assert "Granted" in await ask(ann, room, f"!role grant {mod.user_id} moderator", bot)

    sent = await ask(ann, room, "!mydata", bot)
    assert sent.startswith("I've sent you a direct message with civicbot-my-data-")
    direct = await ann.wait_for_invite()
    await ann.join(direct)
    file_event = await ann.wait_for(direct, lambda e: e["content"].get("msgtype") == "m.file")
    assert file_event["content"]["info"]["mimetype"] == "application/json"
    server, media = file_event["content"]["url"].removeprefix("mxc://").split("/", 1)
    export = await ann._request("GET", f"/_matrix/client/v1/media/download/{server}/{media}")
    assert export["user_id"] == ann.user_id
    admin = export["plugins"]["admin"]
    assert admin["roles_you_hold"][0]["role"] == "admin"
    assert admin["settings_you_changed"][0]["setting"] == "ping.enabled"
    database = bot.directory / "data" / "civicbot.sqlite3"
    before = table_traces(database, ann.user_id)  # a reader may look while the bot runs
    for where in ("core_roles.user_id", "core_room_settings.changed_by", "core_audit.actor"):
        assert any(trace.startswith(where) for trace in before), where
    # Her DM is recorded under a keyed hash of her, not her id (issue 19 §1): it is no trace.
    assert not any(trace.startswith("core_kv") for trace in before)
    with sqlite3.connect(database) as db:
        dm_keys = [k for (k,) in db.execute("SELECT key FROM core_kv WHERE key LIKE 'dm:%'")]
    assert dm_keys and all(k.startswith("dm:~") for k in dm_keys)

    ann.mark()
    done = await ask(ann, room, "!forget me", bot)
    assert done.startswith("Done: I've removed")
    details = await ann.wait_for(direct, is_for(bot.user_id, ann.user_id, "I've forgotten you"))
    assert "admin:" in details["content"]["body"]
    # The record of what happened stays, without her name.
    audit = await ask(mod, room, "!audit", bot)
    assert "someone who has since asked to be forgotten set ping.enabled to off" in audit
    assert ann.user_id not in audit

    assert await bot.stop() == 0
    assert table_traces(database, ann.user_id, localpart) == []
    with sqlite3.connect(database) as db:  # her DM record went with her
        assert db.execute("SELECT key FROM core_kv WHERE key LIKE 'dm:%'").fetchall() == []
    assert table_traces(database, mod.user_id)  # the scan does find people who stayed
    # Deleted and overwritten rows are zeroed too, not left in free space or the journal.
    for path in database.parent.glob("civicbot.sqlite3*"):
        assert localpart.encode() not in path.read_bytes(), path.name
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT value FROM core_room_settings").fetchall() == [("false",)]
        assert db.execute("SELECT count(*) FROM core_audit").fetchone()[0] == 3
