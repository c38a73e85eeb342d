"""One SQLite database for the bot and every plugin.

Each plugin owns the tables whose names start with its own name and brings ordered migrations;
the core owns the ``core_`` tables. Writes that belong together go through
:meth:`Database.transaction`, which serialises them so concurrent handlers never interleave.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

Migration = str | Callable[["Database"], Awaitable[None]]

CORE_MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE core_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE core_handled (
        event_id TEXT PRIMARY KEY,
        handled_at INTEGER NOT NULL
    );
    CREATE INDEX core_handled_at ON core_handled(handled_at);
    CREATE TABLE core_room_settings (
        room_id TEXT NOT NULL,
        plugin TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        changed_by TEXT NOT NULL,
        changed_at INTEGER NOT NULL,
        PRIMARY KEY (room_id, plugin, key)
    );
    CREATE TABLE core_roles (
        room_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        granted_by TEXT NOT NULL,
        granted_at INTEGER NOT NULL,
        PRIMARY KEY (room_id, user_id, role)
    );
    CREATE TABLE core_audit (
        id INTEGER PRIMARY KEY,
        room_id TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX core_audit_room ON core_audit(room_id, at);
    """,
    # Flood limits moved from the admin plugin to the core's own ``limits`` section.
    """
    UPDATE core_room_settings SET plugin = 'limits' WHERE plugin = 'admin' AND key IN (
        'person_burst', 'person_per_minute', 'room_burst', 'room_per_minute', 'cooldown_seconds'
    );
    """,
    # The outbox of promised effects (civicbot.core.effects): written with the state change
    # it belongs to, kept (payload wiped) for a while once done so a replay is recognised.
    """
    CREATE TABLE core_effects (
        key TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        promised_at INTEGER NOT NULL,
        tries INTEGER NOT NULL DEFAULT 0,
        result TEXT,
        done_at INTEGER
    );
    CREATE INDEX core_effects_pending ON core_effects(done_at, promised_at);
    """,
    # Rooms upgraded (m.room.tombstone) and followed (civicbot.core.upgrades).
    """
    CREATE TABLE core_room_replacements (
        old_room TEXT NOT NULL,
        new_room TEXT NOT NULL,
        seen_at INTEGER NOT NULL,
        moved_at INTEGER,
        PRIMARY KEY (old_room, new_room)
    );
    CREATE INDEX core_room_replacements_new ON core_room_replacements(new_room);
    """,
]

_CREATE_TABLE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[\"`]?(\w+)", re.I)


class MigrationError(Exception):
    """A plugin's migration failed or touched a table it does not own."""


class Database:
    """A thin async wrapper over one aiosqlite connection."""

    def __init__(self, conn: aiosqlite.Connection):
        self._conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str) -> Database:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        conn.row_factory = aiosqlite.Row
        # WAL + NORMAL: a crash loses at most the last commit, never corrupts; far faster than FULL.
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten, not left in free pages: "forget me" means gone.
        await conn.execute("PRAGMA secure_delete=ON")
        db = cls(conn)
        await db.migrate("core", CORE_MIGRATIONS)
        return db

    async def close(self) -> None:
        await self._conn.close()

    # -- queries -------------------------------------------------------------------------------
    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """Wait while another task holds a transaction: on one connection its statements and
        ours would otherwise commit (or roll back) together."""
        if self._owner is not None and self._owner is asyncio.current_task():
            yield
            return
        async with self._lock:
            yield

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (committed at once outside a transaction); returns lastrowid."""
        async with self._turn():
            cursor = await self._conn.execute(sql, params)
        return cursor.lastrowid or 0

    async def execute_rowcount(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._turn():
            cursor = await self._conn.execute(sql, params)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self._turn():
            await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        async with self._turn(), self._conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self._turn(), self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def fetchval(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await self.fetchone(sql, params)
        return row[0] if row is not None else None

    _owner: asyncio.Task[Any] | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        """All statements inside commit together or not at all.

        Other tasks wait until it ends, so never start and await another task that uses the
        database from inside a transaction: it would wait for you forever."""
        if self._owner is not None and self._owner is asyncio.current_task():
            yield self  # nested: join the outer transaction
            return
        async with self._lock:
            self._owner = asyncio.current_task()
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                try:
                    await self._conn.execute("COMMIT")
                except BaseException:
                    # A COMMIT that fails (SQLITE_BUSY, a full disk) leaves the transaction
                    # open and its lock held: end it, or every later statement joins it.
                    if self._conn.in_transaction:
                        await self._conn.execute("ROLLBACK")
                    raise
            finally:
                self._owner = None

    # -- migrations ----------------------------------------------------------------------------
    async def migrate(self, owner: str, migrations: Sequence[Migration]) -> int:
        """Apply ``owner``'s migrations not yet applied, in order, each in its own transaction."""
        await self._conn.execute(
            "CREATE TABLE IF NOT EXISTS core_migrations (owner TEXT PRIMARY KEY, version INTEGER)"
        )
        current = (
            await self.fetchval("SELECT version FROM core_migrations WHERE owner = ?", (owner,))
            or 0
        )
        if current > len(migrations):
            raise MigrationError(
                f"the database was written by a newer civicbot: {owner} is at schema version "
                f"{current}, this version knows {len(migrations)}. Upgrade civicbot, or restore "
                f"the backup taken before the upgrade"
            )
        for version, migration in enumerate(migrations, start=1):
            if version <= current:
                continue
            async with self.transaction():
                try:
                    if isinstance(migration, str):
                        _check_ownership(owner, migration)
                        for statement in _split_sql(migration):
                            await self._conn.execute(statement)
                    else:
                        await migration(self)
                except MigrationError:
                    raise
                except Exception as exc:
                    raise MigrationError(f"{owner} migration {version} failed: {exc}") from exc
                await self._conn.execute(
                    "INSERT INTO core_migrations (owner, version) VALUES (?, ?) "
                    "ON CONFLICT(owner) DO UPDATE SET version = excluded.version",
                    (owner, version),
                )
            log.info("applied %s migration %d", owner, version)
        return len(migrations)

    async def table_names(self) -> list[str]:
        rows = await self.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        return [row[0] for row in rows]

    # -- small key-value store for the core ---------------------------------------------------
    async def kv_get(self, key: str) -> str | None:
        value = await self.fetchval("SELECT value FROM core_kv WHERE key = ?", (key,))
        return None if value is None else str(value)

    async def kv_set(self, key: str, value: str) -> None:
        await self.execute(
            "INSERT INTO core_kv (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def _check_ownership(owner: str, sql: str) -> None:
    for table in _CREATE_TABLE.findall(sql):
        if not table.startswith(f"{owner}_"):
            raise MigrationError(f"{owner} may only create tables named '{owner}_…', not '{table}'")


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (no semicolons inside strings, by convention)."""
    return [part.strip() for part in script.split(";") if part.strip()]


async def rewrite_in_key_order(
    db: Database,
    table: str,
    columns: Sequence[str],
    key_width: int,
    add: Sequence[tuple[Any, ...]] = (),
    drop: Callable[[tuple[Any, ...]], bool] | None = None,
) -> None:
    """Empty ``table`` and write its rows back sorted by their first ``key_width`` columns, with
    ``add`` among them and without the rows ``drop(row)`` is true for. Call inside a
    transaction. For tables whose page layout must not reveal arrival order (secret ballots,
    anonymous answers): with random keys, a row's place says nothing about when it came."""
    names = ", ".join(columns)
    rows = [tuple(r) for r in await db.fetchall(f"SELECT {names} FROM {table}")]
    rows = [r for r in rows if drop is None or not drop(r)] + list(add)
    # Python orders str by code point, as SQLite's BINARY collation orders UTF-8 bytes.
    rows.sort(key=lambda row: row[:key_width])
    await db.execute(f"DELETE FROM {table}")
    marks = ", ".join("?" * len(columns))
    await db.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
