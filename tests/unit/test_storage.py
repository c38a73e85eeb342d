"""The database: ordered migrations, and transactions that never mix with other tasks' writes."""

from __future__ import annotations

import asyncio

import pytest

from civicbot.storage.database import Database, MigrationError


async def test_migrations_apply_once_in_order(tmp_path):
    db = await Database.open(tmp_path / "db.sqlite3")
    steps = ["CREATE TABLE demo_a (x INTEGER)", "ALTER TABLE demo_a ADD COLUMN y TEXT"]
    await db.migrate("demo", steps)
    await db.migrate("demo", steps)  # again: nothing to do
    await db.execute("INSERT INTO demo_a (x, y) VALUES (1, 'one')")
    await db.close()
    db = await Database.open(tmp_path / "db.sqlite3")
    await db.migrate("demo", [*steps, "CREATE INDEX demo_a_x ON demo_a(x)"])
    assert await db.fetchval("SELECT version FROM core_migrations WHERE owner = 'demo'") == 3
    assert await db.fetchval("SELECT y FROM demo_a") == "one"
    await db.close()


async def test_a_failing_migration_rolls_back_and_says_which(tmp_path):
    db = await Database.open(tmp_path / "db.sqlite3")
    with pytest.raises(MigrationError, match="demo migration 1 failed"):
        await db.migrate(
            "demo", ["CREATE TABLE demo_a (x INTEGER); INSERT INTO nowhere VALUES (1)"]
        )
    assert "demo_a" not in await db.table_names()
    await db.close()


async def test_other_tasks_wait_for_an_open_transaction(tmp_path):
    db = await Database.open(tmp_path / "db.sqlite3")
    await db.migrate("demo", ["CREATE TABLE demo_t (v INTEGER)"])
    inside = asyncio.Event()

    async def failing_transaction() -> None:
        with pytest.raises(RuntimeError):
            async with db.transaction():
                await db.execute("INSERT INTO demo_t VALUES (1)")
                inside.set()
                await asyncio.sleep(0.05)
                raise RuntimeError("roll back")

    async def outsider() -> None:
        await inside.wait()
        await db.execute("INSERT INTO demo_t VALUES (2)")  # must not join the doomed transaction

    await asyncio.gather(failing_transaction(), outsider())
    assert [row[0] for row in await db.fetchall("SELECT v FROM demo_t")] == [2]
    await db.close()


async def test_a_commit_that_fails_rolls_back_and_frees_the_connection(tmp_path):
    """A deferred foreign key is checked at COMMIT: the failed commit must not leave the
    transaction open (the next statement would silently join it, and its lock stay held)."""
    import sqlite3

    import pytest

    from civicbot.storage.database import Database

    db = await Database.open(tmp_path / "db.sqlite3")
    try:
        await db.migrate(
            "t",
            [
                "CREATE TABLE t_parent (id INTEGER PRIMARY KEY);"
                "CREATE TABLE t_child (parent INTEGER REFERENCES t_parent(id)"
                " DEFERRABLE INITIALLY DEFERRED)"
            ],
        )
        with pytest.raises(sqlite3.IntegrityError):
            async with db.transaction():
                await db.execute("INSERT INTO t_child VALUES (42)")
        await db.execute("INSERT INTO t_parent VALUES (1)")
        assert await db.fetchval("SELECT count(*) FROM t_child") == 0
        assert await db.fetchval("SELECT count(*) FROM t_parent") == 1
    finally:
        await db.close()
