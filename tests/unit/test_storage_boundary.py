"""A plugin's database handle reaches only that plugin's tables: SQLite's authorizer refuses the
core's tables (roles, settings, the audit log, the replay guard) and every other plugin's, so
no plugin can grant itself a role or lift a flood limit behind the audit log's back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from civicbot.storage.database import Database, MigrationError


@pytest.fixture
async def db(tmp_path: Path):
    database = await Database.open(tmp_path / "bot.sqlite3")
    await database.migrate("polls", ["CREATE TABLE polls_votes (id INTEGER PRIMARY KEY, v TEXT)"])
    await database.migrate("tools", ["CREATE TABLE tools_loans (id INTEGER PRIMARY KEY, who TEXT)"])
    yield database
    await database.close()


async def test_a_plugin_reads_and_writes_its_own_tables(db: Database) -> None:
    tools = db.scoped("tools")
    await tools.execute("INSERT INTO tools_loans (who) VALUES (?)", ("@ann:hs",))
    async with tools.transaction():
        await tools.execute("UPDATE tools_loans SET who = ? WHERE id = 1", ("@bob:hs",))
    assert await tools.fetchval("SELECT who FROM tools_loans") == "@bob:hs"
    assert "tools_loans" in await tools.table_names()


@pytest.mark.parametrize(
    "sql",
    [
        # the attack: a resident made admin, a room's flood limit lifted, no audit entry
        "INSERT INTO core_roles VALUES ('!r:hs', '@eve:hs', 'admin', '@eve:hs', 0)",
        "INSERT INTO core_room_settings VALUES ('!r:hs', 'limits', 'room_burst', '0', 'x', 0)",
        "DELETE FROM core_audit",
        "DELETE FROM core_handled",
        "SELECT value FROM core_kv",
        "SELECT user_id FROM core_roles",
        "UPDATE core_migrations SET version = 0",
        # another plugin's data (a secret ballot's table, say)
        "SELECT v FROM polls_votes",
        "DELETE FROM polls_votes",
        "DROP TABLE polls_votes",
        "CREATE INDEX tools_sneaky ON polls_votes(v)",
        # whole-database switches and other files
        "PRAGMA journal_mode=DELETE",
        "PRAGMA secure_delete=OFF",
        "PRAGMA foreign_keys=OFF",
        "ATTACH DATABASE ':memory:' AS other",
        "CREATE VIEW tools_v AS SELECT * FROM core_roles",
    ],
)
async def test_a_plugin_cannot_touch_anything_else(db: Database, sql: str) -> None:
    tools = db.scoped("tools")
    with pytest.raises(sqlite3.DatabaseError):
        await tools.execute(sql)
    # and the core's own handle is unaffected by the plugin's rules afterwards
    assert await db.fetchval("SELECT count(*) FROM core_roles") == 0


async def test_a_trigger_cannot_carry_a_write_past_the_boundary(db: Database) -> None:
    """A trigger's body is checked when it fires, under the rules of whoever fired it."""
    tools = db.scoped("tools")
    await db.execute("INSERT INTO core_audit VALUES (1, '!r', '@mod:hs', 'role', 'x', 0)")
    await tools.execute(
        "CREATE TRIGGER tools_t AFTER INSERT ON tools_loans BEGIN DELETE FROM core_audit; END"
    )
    with pytest.raises(sqlite3.DatabaseError):
        await tools.execute("INSERT INTO tools_loans (who) VALUES ('@eve:hs')")
    assert await db.fetchval("SELECT count(*) FROM core_audit") == 1


async def test_a_plugin_may_keep_its_own_data_safe(db: Database) -> None:
    tools = db.scoped("tools")
    await tools.execute("PRAGMA secure_delete=ON")
    await tools.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
    assert [r[1] for r in await tools.fetchall("PRAGMA table_info(tools_loans)")] == ["id", "who"]
    with pytest.raises(sqlite3.DatabaseError):
        await tools.fetchall("PRAGMA table_info(core_roles)")


async def test_a_plugins_transaction_holds_the_core_writes_it_causes(db: Database) -> None:
    """The core may write its own tables inside a transaction a plugin opened (an audit entry
    for the plugin's change): each handle keeps its own rules within one transaction."""
    tools = db.scoped("tools")
    async with tools.transaction():
        await tools.execute("INSERT INTO tools_loans (who) VALUES ('@ann:hs')")
        await db.execute("INSERT INTO core_kv (key, value) VALUES ('k', 'v')")
        with pytest.raises(sqlite3.DatabaseError):
            await tools.execute("INSERT INTO core_kv (key, value) VALUES ('k2', 'v')")
    assert await db.fetchval("SELECT value FROM core_kv WHERE key = 'k'") == "v"


async def test_a_plugins_migration_is_held_to_the_same_boundary(db: Database) -> None:
    async def sneaky(handle: Database) -> None:
        await handle.execute("INSERT INTO core_roles VALUES ('!r', '@eve:hs', 'admin', 'x', 0)")

    with pytest.raises(MigrationError, match="tools migration 2 failed"):
        await db.migrate(
            "tools", ["CREATE TABLE tools_loans (id INTEGER PRIMARY KEY, who TEXT)", sneaky]
        )
    assert await db.fetchval("SELECT count(*) FROM core_roles") == 0


async def test_full_text_indexes_work_through_a_plugin_handle(db: Database) -> None:
    tools = db.scoped("tools")
    await tools.execute("CREATE VIRTUAL TABLE tools_fts USING fts5(body)")
    await tools.execute("INSERT INTO tools_fts (body) VALUES ('a ladder to lend')")
    assert await tools.fetchval("SELECT body FROM tools_fts WHERE tools_fts MATCH 'ladder'")
