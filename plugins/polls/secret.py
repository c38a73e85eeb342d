"""Secret ballots on disk: who voted and what was chosen, with nothing that pairs them — not in
the tables, not in the page layout, and not in any copy of the files taken at any moment.

Three tables, in their own database file (``secret-ballots.sqlite3`` beside the main one):
``polls_secret_ballots`` (what: answers under random keys), ``polls_secret_receipts`` (a salted
hash of each ``!vote`` event, to recognise a replay) and ``polls_secret_voters`` (who, with the
receipt of their ballot's event, to refuse a second ballot and to answer a replay).

Why a file of its own, in rollback-journal mode: the main database is in WAL mode, and while any
other reader holds a read transaction (a backup tool, the ``sqlite3`` shell) the log cannot be
reset, so it keeps one page image per commit; two neighbouring commits, one adding a voter and
one a ballot, paired them. A rollback journal holds only the page images of the transaction in
progress and is deleted at its commit: no history of commits accumulates. A reader holding the
file blocks our commit instead; the cast waits for it (``busy_timeout``) and, if it never lets
go, the voter is asked to send the vote again.

Why two transactions per ballot: whatever is in flight can be seen by whoever copies the files
mid-commit (the journal's images next to the new pages), or is left behind by a SIGKILL (a hot
journal). So a cast writes the ballot and its receipt in one transaction, and the voter in a
second, after the first journal is gone: any one copy shows at most one of the two being added.
A crash between them leaves the receipt, so the replayed ``!vote`` writes only the voter.

Why every row is rewritten in each transaction: SQLite puts each new row just below the previous
one on its page, so the rows' offsets would give their order of arrival, and the n-th voter
would match the n-th ballot. A table touched by a cast is emptied (``secure_delete`` overwrites
the rows) and written back in key order, so its pages depend on which rows there are, not on
when they came (alphabetical for voters, random for ballots). That costs about 6 ms per 1,000
secret votes stored (in all polls) for each ballot cast (``bench/bench_secret_ballots.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
from civicbot_plugins.polls.models import ANONYMOUS, OPEN, Poll, anonymous_voter

from civicbot.api import CommandError, Database, Migration, failpoints, rewrite_in_key_order

log = logging.getLogger(__name__)

COUNTED, ALREADY, CLOSED = "counted", "already", "closed"
FILE_NAME = "secret-ballots.sqlite3"
BUSY_TIMEOUT_MS = 20_000  # how long a cast waits for another reader of the file to let go

SECRET_MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE polls_secret_voters (
        poll_id INTEGER NOT NULL,
        voter TEXT NOT NULL,
        receipt TEXT NOT NULL,
        PRIMARY KEY (poll_id, voter)
    ) WITHOUT ROWID;
    CREATE TABLE polls_secret_ballots (
        ballot_key TEXT PRIMARY KEY,
        poll_id INTEGER NOT NULL,
        answers TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID;
    CREATE TABLE polls_secret_receipts (
        poll_id INTEGER NOT NULL,
        receipt TEXT NOT NULL,
        PRIMARY KEY (poll_id, receipt)
    ) WITHOUT ROWID
    """,
]
# table, its columns (the key first), how many columns the key has
_TABLES = {
    "polls_secret_voters": (("poll_id", "voter", "receipt"), 2),
    "polls_secret_ballots": (("ballot_key", "poll_id", "answers", "reason"), 1),
    "polls_secret_receipts": (("poll_id", "receipt"), 2),
}
BUSY_REPLY = (
    "I couldn't record your secret vote just now (my ballot box is busy). Nothing was counted: "
    "please send the same vote again in a minute."
)


def receipt(poll: Poll, event_id: str) -> str:
    """What is kept of the ``!vote`` event that cast a ballot: enough to know it again, not
    enough to find it without the poll's salt."""
    return hashlib.blake2s(f"{poll.salt}:{event_id}".encode(), digest_size=16).hexdigest()


class SecretBallots:
    """Repository over the secret-ballot file. ``db`` is the main database: the file lives
    beside it, and the poll's state (open or not) is read there."""

    def __init__(self, db: Database):
        self.main = db
        self._db: Database | None = None
        self._lock = asyncio.Lock()  # one cast (or forget) at a time: checks, then two writes

    async def _open(self) -> Database:
        if self._db is None:
            row = await self.main.fetchone(
                "SELECT file FROM pragma_database_list WHERE name = 'main'"
            )
            main_file = str(row[0]) if row is not None and row[0] else ""
            path = str(Path(main_file).with_name(FILE_NAME)) if main_file else ":memory:"
            conn = await aiosqlite.connect(path, isolation_level=None)
            # DELETE: no log of past commits; FULL: a commit is on disk before the voter is
            # told; secure_delete: a rewritten row leaves no old copy in free space.
            for pragma in (
                "journal_mode=DELETE",
                "synchronous=FULL",
                "secure_delete=ON",
                "temp_store=MEMORY",
                f"busy_timeout={BUSY_TIMEOUT_MS}",
            ):
                await conn.execute(f"PRAGMA {pragma}")
            db = Database(conn)
            await db.migrate("polls", SECRET_MIGRATIONS)
            self._db = db
            await self._move_legacy_rows()
        return self._db

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _move_legacy_rows(self) -> None:
        """Ballots cast before the secret file existed sit in the main database: move them
        here (in key order), then overwrite them there and empty its log."""
        assert self._db is not None
        tables = set(await self.main.table_names())
        if "polls_secret_voters" not in tables:
            return
        voters = await self.main.fetchall("SELECT poll_id, voter FROM polls_secret_voters")
        ballots = await self.main.fetchall(
            "SELECT ballot_key, poll_id, answers, reason FROM polls_secret_ballots"
        )
        marks = await self.main.fetchall("SELECT poll_id, receipt FROM polls_secret_receipts")
        if not (voters or ballots or marks):
            return
        # Old voter rows named no receipt; "" means a replay of that old ballot reads "already".
        new = {
            "polls_secret_voters": [(v[0], v[1], "") for v in voters],
            "polls_secret_ballots": [tuple(b) for b in ballots],
            "polls_secret_receipts": [tuple(m) for m in marks],
        }
        async with self._db.transaction():
            for table, rows in new.items():
                await self._rewrite(table, rows)
        async with self.main.transaction():
            for table in new:
                await self.main.execute(f"DELETE FROM {table}")
        await self.main.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
        log.info("moved %d secret ballots into %s", len(ballots), FILE_NAME)

    async def _rewrite(
        self,
        table: str,
        add: list[tuple[Any, ...]] | None = None,
        drop: Callable[[tuple[Any, ...]], bool] | None = None,
    ) -> None:
        """``table`` rewritten in key order (see
        :func:`civicbot.storage.database.rewrite_in_key_order`).
        Call inside a transaction."""
        assert self._db is not None
        columns, width = _TABLES[table]
        await rewrite_in_key_order(self._db, table, columns, width, add or (), drop)

    # -- casting -------------------------------------------------------------------------------
    async def cast(
        self,
        poll: Poll,
        voter: str,
        event_id: str,
        answers: list[str],
        reason: str = "",
        in_time: bool = True,
    ) -> str:
        """Record a ballot: "counted" (also for the same event again, even once too late),
        "already" (one ballot each) or "closed" (also when not ``in_time``). Raises a
        :class:`CommandError` asking for the vote again when the file stays locked."""
        mark = receipt(poll, event_id)
        async with self._lock:
            db = await self._open()
            try:
                kept = await db.fetchval(
                    "SELECT receipt FROM polls_secret_voters WHERE poll_id = ? AND voter IN (?, ?)",
                    (poll.id, voter, anonymous_voter(poll.salt, voter)),
                )
                if kept is not None:
                    return COUNTED if kept == mark else ALREADY
                if await db.fetchval(
                    "SELECT 1 FROM polls_secret_receipts WHERE poll_id = ? AND receipt = ?",
                    (poll.id, mark),
                ):
                    # This very ballot was stored, and we stopped before noting the voter.
                    await self._note_voter(poll.id, voter, mark)
                    return COUNTED
                state = await self.main.fetchval(
                    "SELECT state FROM polls_polls WHERE id = ?", (poll.id,)
                )
                if state != OPEN or not in_time:
                    return CLOSED
                await self._store_ballot(poll.id, mark, answers, reason)
                failpoints.hit("secret-ballot-stored")
                await self._note_voter(poll.id, voter, mark)
                return COUNTED
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                log.warning("the secret-ballot file stayed locked by another reader: %s", exc)
                await self._abandon(db)
                raise CommandError(BUSY_REPLY) from None

    @staticmethod
    async def _abandon(db: Database) -> None:
        """Roll back a transaction whose COMMIT was refused: ``Database.transaction`` rolls back
        only errors raised inside it, and a connection left mid-transaction would keep its
        lock and shut every other reader out."""
        try:
            await db.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass  # no transaction was open

    async def _store_ballot(self, poll_id: int, mark: str, answers: list[str], reason: str) -> None:
        """The first transaction: the ballot and its receipt, nothing about the voter."""
        assert self._db is not None
        async with self._db.transaction():
            ballot = (secrets.token_hex(16), poll_id, json.dumps(answers), reason)
            await self._rewrite("polls_secret_ballots", [ballot])
            await self._rewrite("polls_secret_receipts", [(poll_id, mark)])
            failpoints.hit("secret-ballot-uncommitted")

    async def _note_voter(self, poll_id: int, voter: str, mark: str) -> None:
        """The second transaction: the voter, nothing about the ballot."""
        assert self._db is not None
        async with self._db.transaction():
            await self._rewrite("polls_secret_voters", [(poll_id, voter, mark)])

    # -- reading -------------------------------------------------------------------------------
    async def has_voted(self, poll: Poll, voter: str) -> bool:
        db = await self._open()
        return bool(
            await db.fetchval(
                "SELECT 1 FROM polls_secret_voters WHERE poll_id = ? AND voter IN (?, ?)",
                (poll.id, voter, anonymous_voter(poll.salt, voter)),
            )
        )

    async def ballots(self, poll_id: int) -> list[tuple[list[str], str]]:
        async with self._lock:  # a cast in progress finishes first: a close counts it
            db = await self._open()
            rows = await db.fetchall(
                "SELECT answers, reason FROM polls_secret_ballots WHERE poll_id = ?", (poll_id,)
            )
        return [(json.loads(row[0]), row[1]) for row in rows]

    async def voter_count(self, poll_id: int) -> int:
        db = await self._open()
        return int(
            await db.fetchval(
                "SELECT COUNT(*) FROM polls_secret_voters WHERE poll_id = ?", (poll_id,)
            )
            or 0
        )

    async def polls_of(self, user_id: str) -> list[int]:
        db = await self._open()
        rows = await db.fetchall(
            "SELECT poll_id FROM polls_secret_voters WHERE voter = ? ORDER BY poll_id", (user_id,)
        )
        return [row[0] for row in rows]

    # -- forgetting ----------------------------------------------------------------------------
    async def forget(self, user_id: str, polls: list[tuple[int, bool, str]]) -> tuple[int, int]:
        """Drop ``user_id``'s voter rows in closed polls and rename them to the poll's
        stand-in in open ones; ``polls`` is ``(poll id, closed, stand-in)``. Returns
        (removed, anonymised)."""
        closed = {poll_id for poll_id, is_closed, _ in polls if is_closed}
        alias = {poll_id: stand_in for poll_id, is_closed, stand_in in polls if not is_closed}
        async with self._lock:
            db = await self._open()
            rows = await db.fetchall(
                "SELECT poll_id, voter, receipt FROM polls_secret_voters WHERE voter = ?",
                (user_id,),
            )
            mine = [tuple(r) for r in rows if r[0] in closed or r[0] in alias]
            if not mine:
                return 0, 0
            renamed = [(p, alias[p], mark) for p, _, mark in mine if p in alias]
            async with db.transaction():
                await self._rewrite(
                    "polls_secret_voters", renamed, drop=lambda row: tuple(row) in mine
                )
        return len(mine) - len(renamed), len(renamed)

    async def drop_stand_ins(self, poll_id: int) -> None:
        """At a poll's close: the stand-ins of people forgotten while it was open go (its
        result holds their totals, and the salt beside a stand-in would reveal it again)."""
        async with self._lock:
            db = await self._open()
            if not await db.fetchval(
                "SELECT 1 FROM polls_secret_voters WHERE poll_id = ? AND voter LIKE ?",
                (poll_id, ANONYMOUS + "%"),
            ):
                return
            async with db.transaction():
                await self._rewrite(
                    "polls_secret_voters",
                    drop=lambda row: row[0] == poll_id and str(row[1]).startswith(ANONYMOUS),
                )


def withhold_small_result(result: dict[str, Any], minimum: int) -> dict[str, Any]:
    """A secret result with fewer than ``minimum`` voters publishes the turnout only: with one
    or two voters, the counts would say how each of them voted."""
    if result["voters"] >= minimum or not result["voters"]:
        return result
    return {
        **result,
        "options": [],
        "winners": [],
        "blocks": [],
        "rounds": [],
        "withheld": minimum,
    }
