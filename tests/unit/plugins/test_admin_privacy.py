"""!mydata and !forget me through the fake transport, down to the rows in the database."""

from __future__ import annotations

import json
import logging
import re

from civicbot.core.plugin import ForgetReport, Plugin
from civicbot.logs import privacy_filter
from civicbot.storage.database import Database
from civicbot.testing.harness import MODERATOR, BotHarness
from tests.unit.plugins.test_admin import BOB, BOSS, ask, plugin_classes

# Ids unique to this module: forgetting someone protects their id in the process-wide log
# filter, which other tests' log assertions must not feel.
ME = "@forgetful:test"
QUIET, SHY = "@forget-quiet:test", "@forget-shy:test"
NAMESAKE = "@forgetful:test.org"  # a different person whose id starts with ME's


def room_with_me(h: BotHarness) -> str:
    return h.room(members=[ME, BOB, BOSS, NAMESAKE], power={BOSS: 100})


async def traces(db: Database, user_id: str) -> list[str]:
    """Every (table, column) whose text holds ``user_id`` as a whole id."""
    pattern = re.compile(re.escape(user_id) + r"(?![A-Za-z0-9.\-:])")
    found = []
    for table in await db.table_names():
        columns = await db.fetchall(f"PRAGMA table_info({table})")
        for column in columns:
            name = column["name"]
            for row in await db.fetchall(f'SELECT "{name}" FROM {table}'):
                if isinstance(row[0], str) and pattern.search(row[0]):
                    found.append(f"{table}.{name}: {row[0]}")
    return found


async def busy_history(h: BotHarness, room: str) -> None:
    """ME moderates, changes things, holds roles and is named in settings."""
    await ask(h, room, BOSS, f"!role grant {ME} moderator")
    await ask(h, room, ME, "!config council.greeting morning all")
    await ask(h, room, ME, f"!role grant {BOB} councillor")
    await ask(h, room, MODERATOR, f"!role grant {ME} councillor")
    await ask(h, room, MODERATOR, f"!role grant {NAMESAKE} councillor")
    await ask(h, room, MODERATOR, f"!config council.watchers {ME}, {BOB}")


async def test_mydata_sends_a_json_file_by_direct_message(tmp_path):
    async with BotHarness.create(tmp_path, plugin_classes()) as h:
        room = room_with_me(h)
        await busy_history(h, room)
        reply = await ask(h, room, ME, "!mydata")
        assert reply.startswith("I've sent you a direct message with civicbot-my-data-2026-11-23")
        dm = await h.transport.direct_room(ME)
        note, file = [s for s in h.transport.sent if s.room_id == dm]
        assert "everything I store about you, as a JSON file" in note.body
        assert file.content["msgtype"] == "m.file"
        assert file.content["info"]["mimetype"] == "application/json"
        export = json.loads(file.content["_data"])
        assert export["user_id"] == ME
        admin = export["plugins"]["admin"]
        assert {r["role"] for r in admin["roles_you_hold"]} == {"moderator", "councillor"}
        assert admin["roles_you_granted"][0]["to"] == BOB
        assert admin["settings_you_changed"][0]["setting"] == "council.greeting"
        assert admin["settings_you_changed"][0]["value"] == "morning all"
        assert admin["settings_you_changed"][0]["changed_at"].endswith("Z")
        assert any(e["by"] == ME for e in admin["audit_log_entries"])
        assert not any(NAMESAKE in json.dumps(e) for e in admin["audit_log_entries"])


async def test_mydata_in_a_direct_chat_answers_there_only(tmp_path):
    async with BotHarness.create(tmp_path, plugin_classes()) as h:
        dm = await h.transport.direct_room(BOB)
        await h.say(dm, BOB, "!mydata")
        note, file = h.transport.sent
        assert "(from privacy)" in note.body  # only the link to this very chat
        assert json.loads(file.content["_data"])["plugins"] == {"privacy": {"direct_chat_room": dm}}


async def test_forget_me_leaves_no_trace_but_keeps_the_records(tmp_path):
    async with BotHarness.create(tmp_path, plugin_classes()) as h:
        room = room_with_me(h)
        await busy_history(h, room)
        await h.transport.direct_room(ME)  # a direct chat the transport has on record
        audit_rows = await h.db.fetchval("SELECT count(*) FROM core_audit")
        assert await traces(h.db, ME)

        reply = await ask(h, room, ME, "!forget me")
        assert reply.startswith("Done: I've removed 3 and anonymised")
        assert "I've sent you the details in a direct message" in reply
        details = h.transport.texts(await h.transport.direct_room(ME))[-1]
        assert "admin: 2 removed" in details and "privacy: 1 removed" in details

        assert await traces(h.db, ME) == []
        assert await h.db.fetchval("SELECT count(*) FROM core_audit") == audit_rows
        greeting = await h.db.fetchone(
            "SELECT value, changed_by FROM core_room_settings WHERE key = 'greeting'"
        )
        assert tuple(greeting) == ('"morning all"', "[forgotten]")
        watchers = await h.bot.room_settings.get(room, "council")
        assert watchers.watchers == [BOB]
        grants = await h.db.fetchall("SELECT user_id, granted_by FROM core_roles ORDER BY 1")
        assert [tuple(g) for g in grants] == [(BOB, "[forgotten]"), (NAMESAKE, MODERATOR)]
        audit = await ask(h, room, BOSS, "!audit 20")
        assert "someone who has since asked to be forgotten set council.greeting" in audit
        assert f"{MODERATOR} granted councillor to [forgotten]" in audit
        assert f"{MODERATOR} granted councillor to {NAMESAKE}" in audit

        # The person's id is kept out of this process's logs from now on.
        record = logging.LogRecord("x", logging.INFO, "", 0, "vote from %s", (ME,), None)
        privacy_filter.filter(record)
        assert ME not in record.getMessage()


async def test_forget_me_in_a_direct_chat_confirms_there(tmp_path):
    async with BotHarness.create(tmp_path, plugin_classes()) as h:
        dm = await h.transport.direct_room(QUIET)
        await h.say(dm, QUIET, "!forget me")
        (details,) = h.transport.texts()  # only there, and only the link to this very chat
        assert details.startswith("I've forgotten you.")
        assert "privacy: 1 removed, 0 anonymised" in details


class BrokenPlugin(Plugin):
    name = "broken"

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        raise RuntimeError("disk on fire")

    async def export_user_data(self, user_id: str):
        raise RuntimeError("disk on fire")


class TidyPlugin(Plugin):
    name = "tidy"

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        return ForgetReport(removed=2, anonymised=5, notes=["poll totals kept"])


async def test_a_plugin_that_fails_is_never_reported_as_forgotten(tmp_path, caplog):
    classes = plugin_classes(broken=BrokenPlugin, tidy=TidyPlugin)
    async with BotHarness.create(tmp_path, classes) as h:
        room = room_with_me(h)
        reply = await ask(h, room, SHY, "!forget me")
        assert "Part of it didn't finish (broken)" in reply
        details = h.transport.texts(await h.transport.direct_room(SHY))[-1]
        assert "tidy: 2 removed, 5 anonymised (poll totals kept)" in details
        assert "I couldn't confirm that broken finished" in details
        assert "disk on fire" in caplog.text
        await ask(h, room, SHY, "!mydata")
        file = next(s for s in reversed(h.transport.sent) if "_data" in s.content)
        assert file.room_id == await h.transport.direct_room(SHY)
        assert json.loads(file.content["_data"])["could_not_export"] == ["broken"]


async def test_forget_without_me_says_what_to_type(tmp_path):
    async with BotHarness.create(tmp_path, plugin_classes()) as h:
        room = room_with_me(h)
        for text in ("!forget", f"!forget {BOB}", "!forget me please"):
            reply = await ask(h, room, BOSS, text)
            assert reply.startswith("To have me remove or anonymise everything"), text
            assert "type !forget me" in reply


async def test_when_the_details_cannot_be_sent_privately_the_room_is_told_so(tmp_path):
    async with BotHarness.create(tmp_path, plugin_classes()) as h:
        room = h.room(members=[ME, SHY])  # roles go only to members
        await ask(h, room, MODERATOR, f"!role grant {SHY} councillor")
        h.transport.fail_sends = 1  # the direct message fails
        reply = await ask(h, room, SHY, "!forget me")
        assert reply.startswith("Done: I've removed 1 and anonymised 1")
        assert "I couldn't send you the details privately" in reply
