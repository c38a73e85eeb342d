"""One SQLite database for the bot and every plugin.

Each plugin owns the tables whose names start with its own name and brings ordered migrations;
the core owns the ``core_`` tables. Writes that belong together go through
:meth:`Database.transaction`, which serialises them so concurrent handlers never interleave.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
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
    # The bot's posts about each plugin's items (civicbot.core.posts), edited when the item
    # changes. No person: the item key is the plugin's own id for the item.
    """
    CREATE TABLE core_item_posts (
        owner TEXT NOT NULL,
        item TEXT NOT NULL,
        room_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        posted_at INTEGER NOT NULL,
        PRIMARY KEY (owner, item, event_id)
    );
    """,
    # An effect whose moment can pass (a reminder, a week's digest): given up, not carried
    # out, once the bot's clock reaches it (civicbot.core.effects).
    """
    ALTER TABLE core_effects ADD COLUMN expires_at INTEGER;
    """,
]

_CREATE_TABLE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[\"`]?(\w+)", re.I)


class MigrationError(Exception):
    """A plugin's migration failed or touched a table it does not own."""


# What a plugin's handle may do besides reading and writing its own tables.
_HARMLESS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_TRANSACTION,
    sqlite3.SQLITE_SAVEPOINT,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
    sqlite3.SQLITE_ANALYZE,
    sqlite3.SQLITE_REINDEX,
}
_ON_A_TABLE = {  # the table's name is the action's first argument
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_INSERT,
    sqlite3.SQLITE_UPDATE,
    sqlite3.SQLITE_DELETE,
    sqlite3.SQLITE_CREATE_TABLE,
    sqlite3.SQLITE_DROP_TABLE,
    sqlite3.SQLITE_CREATE_TEMP_TABLE,
    sqlite3.SQLITE_DROP_TEMP_TABLE,
    sqlite3.SQLITE_CREATE_VTABLE,  # full-text indexes (fts5); their shadow tables share the name
    sqlite3.SQLITE_DROP_VTABLE,
}
_ON_AN_INDEX = {  # the table is the second argument (of an index, a trigger, ALTER TABLE)
    sqlite3.SQLITE_ALTER_TABLE,
    sqlite3.SQLITE_CREATE_INDEX,
    sqlite3.SQLITE_DROP_INDEX,
    sqlite3.SQLITE_CREATE_TEMP_INDEX,
    sqlite3.SQLITE_DROP_TEMP_INDEX,
    sqlite3.SQLITE_CREATE_TRIGGER,
    sqlite3.SQLITE_DROP_TRIGGER,
}
# Pragmas that only make a plugin's own data safer; anything else (journal mode, foreign keys,
# turning secure_delete off) changes the whole database and is the core's to set.
_PLUGIN_PRAGMAS = {("secure_delete", "on"), ("secure_delete", "1"), ("wal_checkpoint", None)}
_PLUGIN_PRAGMAS |= {("database_list", None), ("data_version", None)}  # read-only, fts5 asks
_PLUGIN_PRAGMAS |= {("wal_checkpoint", mode) for mode in ("passive", "full", "restart", "truncate")}
_SCHEMA_PRAGMAS = {"table_info", "table_xinfo", "index_list", "foreign_key_list"}
# The schema catalogue may be read (a plugin listing its own tables); nothing else of SQLite's.
_CATALOGUE = {"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_sequence"}
_CATALOGUE |= {"pragma_database_list"}  # where the database file is (for a file beside it)


def owner_authorizer(
    owner: str,
) -> Callable[[int, str | None, str | None, str | None, str | None], int]:
    """An SQLite authorizer that lets a statement touch only ``owner``'s tables (``<owner>_…``).

    Set on the connection for the length of each statement a plugin's handle runs, so the
    boundary the plugin guide promises is enforced by SQLite itself: a plugin cannot read or
    write the core's tables (roles, settings, the audit log, the replay guard) nor another
    plugin's, whatever SQL it writes. What the engine publishes reaches plugins through the API."""
    prefix = f"{owner}_"

    def allowed(table: str | None) -> bool:
        return table is not None and (table.startswith(prefix) or table in _CATALOGUE)

    def authorize(
        action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None
    ) -> int:
        if action in _HARMLESS:
            return sqlite3.SQLITE_OK
        if action in _ON_A_TABLE:
            return sqlite3.SQLITE_OK if allowed(arg1) else sqlite3.SQLITE_DENY
        if action in _ON_AN_INDEX:
            return sqlite3.SQLITE_OK if allowed(arg2) else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            pragma = ((arg1 or "").lower(), arg2.lower() if arg2 else None)
            if pragma[0] in _SCHEMA_PRAGMAS:  # reading the shape of one of its own tables
                return sqlite3.SQLITE_OK if allowed(arg2) else sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK if pragma in _PLUGIN_PRAGMAS else sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_DENY  # ATTACH, DETACH, views, virtual tables, anything new

    return authorize


class _Shared:
    """What every handle on one connection shares: the connection, the lock, the running
    transaction's task, and whose rules the connection's authorizer applies right now."""

    def __init__(self, conn: aiosqlite.Connection):
        self.conn = conn
        self.lock = asyncio.Lock()
        self.owner: asyncio.Task[Any] | None = None
        self.scope: str | None = None  # None: the core, unrestricted
        self.rules: dict[str, Callable[..., int]] = {}


class Database:
    """A thin async wrapper over one aiosqlite connection.

    The core holds the unrestricted handle; each plugin gets :meth:`scoped` ``(name)``, the same
    connection seen through an SQLite authorizer that allows only that plugin's own tables."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        _shared: _Shared | None = None,
        _scope: str | None = None,
    ):
        self._shared = _shared or _Shared(conn)
        self._conn = conn
        self._scope = _scope

    def scoped(self, owner: str) -> Database:
        """A handle on the same database that can touch only ``owner``'s tables."""
        return Database(self._conn, _shared=self._shared, _scope=owner)

    @property
    def _lock(self) -> asyncio.Lock:
        return self._shared.lock

    @property
    def _owner(self) -> asyncio.Task[Any] | None:
        return self._shared.owner

    @_owner.setter
    def _owner(self, task: asyncio.Task[Any] | None) -> None:
        self._shared.owner = task

    async def _apply_scope(self) -> None:
        """Make the connection's authorizer this handle's (a no-op when it already is)."""
        shared = self._shared
        if shared.scope == self._scope:
            return
        if self._scope is None:
            await self._conn.set_authorizer(None)
        else:
            rules = shared.rules.get(self._scope)
            if rules is None:
                rules = shared.rules[self._scope] = owner_authorizer(self._scope)
            await self._conn.set_authorizer(rules)
        shared.scope = self._scope

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
            await self._apply_scope()  # the transaction's task may mix handles: each its own rules
            yield
            return
        async with self._lock:
            await self._apply_scope()
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
            await self._apply_scope()
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
        """Apply ``owner``'s migrations not yet applied, in order, each in its own transaction.

        Called on the core's handle; a plugin's migrations (SQL or callables) run on its scoped
        handle, so a migration can no more touch the core's tables than the plugin can."""
        core = Database(self._conn, _shared=self._shared)
        own = core if owner == "core" else core.scoped(owner)
        await core.execute(
            "CREATE TABLE IF NOT EXISTS core_migrations (owner TEXT PRIMARY KEY, version INTEGER)"
        )
        current = (
            await core.fetchval("SELECT version FROM core_migrations WHERE owner = ?", (owner,))
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
            async with core.transaction():
                try:
                    if isinstance(migration, str):
                        _check_ownership(owner, migration)
                        for statement in _split_sql(migration):
                            await own.execute(statement)
                    else:
                        await migration(own)
                except MigrationError:
                    raise
                except Exception as exc:
                    raise MigrationError(f"{owner} migration {version} failed: {exc}") from exc
                await core.execute(
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
