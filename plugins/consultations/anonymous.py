"""Anonymous answers on disk: who answered and what was answered, with nothing that pairs them.

The same approach as the polls plugin's secret ballots (``plugins/polls/secret.py``): a file of
its own beside the main database (``consultations-anonymous.sqlite3``), in rollback-journal mode
(no write-ahead log keeping one page image per commit) with ``secure_delete`` (a deleted row is
overwritten). Three tables that share only the consultation number:

- ``consultations_anon_bundles``: what — one row per respondent, all their answers, under a
  random key;
- ``consultations_anon_receipts``: a salted hash of the event that sent the answers, to
  recognise a replay after a crash;
- ``consultations_anon_voters``: who — to refuse a second set of answers and to send the
  council's response to those who asked for it.

SQLite writes each new row just below the previous one on its page, so row offsets would give
the order of arrival and the n-th voter would match the n-th bundle. Every transaction empties
the table it touches and writes it back in key order (names alphabetically, bundles by their
random key): the pages depend on which rows there are, not on when they came. The bundle and its
receipt are one transaction and the voter a second one, so no single copy of the files taken
mid-commit shows both being added. The tables hold no timestamps and are WITHOUT ROWID.

Anonymous answers cannot be changed once sent: changing them would need exactly the link this
file refuses to keep. The walk-through says so before the last step.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

from civicbot.api import Database, Migration, rewrite_in_key_order

log = logging.getLogger(__name__)

FILE_NAME = "consultations-anonymous.sqlite3"
FORGOTTEN = "forgotten:"
STORED, ALREADY = "stored", "already"

ANON_MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE consultations_anon_voters (
        consultation_id INTEGER NOT NULL,
        voter TEXT NOT NULL,
        follow INTEGER NOT NULL,
        PRIMARY KEY (consultation_id, voter)
    ) WITHOUT ROWID;
    CREATE TABLE consultations_anon_bundles (
        bundle_key TEXT PRIMARY KEY,
        consultation_id INTEGER NOT NULL,
        answers TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE consultations_anon_receipts (
        consultation_id INTEGER NOT NULL,
        receipt TEXT NOT NULL,
        PRIMARY KEY (consultation_id, receipt)
    ) WITHOUT ROWID
    """,
]
# table: (columns, the key first; how many columns the key has)
TABLES: dict[str, tuple[tuple[str, ...], int]] = {
    "consultations_anon_voters": (("consultation_id", "voter", "follow"), 2),
    "consultations_anon_bundles": (("bundle_key", "consultation_id", "answers"), 1),
    "consultations_anon_receipts": (("consultation_id", "receipt"), 2),
}


def receipt(salt: str, event_id: str) -> str:
    return hashlib.blake2s(f"{salt}:{event_id}".encode(), digest_size=16).hexdigest()


class AnonymousAnswers:
    """Repository over the anonymous-answers file, opened beside the main database."""

    def __init__(self, main: Database):
        self.main = main
        self._db: Database | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> Database:
        if self._db is None:
            row = await self.main.fetchone(
                "SELECT file FROM pragma_database_list WHERE name = 'main'"
            )
            main_file = str(row[0]) if row is not None and row[0] else ""
            path = str(Path(main_file).with_name(FILE_NAME)) if main_file else ":memory:"
            conn = await aiosqlite.connect(path, isolation_level=None)
            for pragma in (
                "journal_mode=DELETE",
                "synchronous=FULL",
                "secure_delete=ON",
                "temp_store=MEMORY",
                "busy_timeout=20000",
            ):
                await conn.execute(f"PRAGMA {pragma}")
            db = Database(conn)
            await db.migrate("consultations", ANON_MIGRATIONS)
            self._db = db
        return self._db

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

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
        columns, width = TABLES[table]
        await rewrite_in_key_order(self._db, table, columns, width, add or (), drop)

    async def submit(
        self,
        consultation_id: int,
        salt: str,
        voter: str,
        event_id: str,
        answers: dict[int, str],
        follow: bool,
    ) -> str:
        """Store one person's answers: "stored" (also for the same event again) or "already"."""
        mark = receipt(salt, event_id)
        async with self._lock:
            db = await self._open()
            if await self.has_answered(consultation_id, voter):
                return ALREADY
            if not await db.fetchval(
                "SELECT 1 FROM consultations_anon_receipts"
                " WHERE consultation_id = ? AND receipt = ?",
                (consultation_id, mark),
            ):
                async with db.transaction():
                    bundle = (secrets.token_hex(16), consultation_id, json.dumps(answers))
                    await self._rewrite("consultations_anon_bundles", [bundle])
                    await self._rewrite("consultations_anon_receipts", [(consultation_id, mark)])
            async with db.transaction():
                await self._rewrite(
                    "consultations_anon_voters", [(consultation_id, voter, int(follow))]
                )
        return STORED

    async def replayed(self, consultation_id: int, salt: str, event_id: str) -> bool:
        db = await self._open()
        return bool(
            await db.fetchval(
                "SELECT 1 FROM consultations_anon_receipts"
                " WHERE consultation_id = ? AND receipt = ?",
                (consultation_id, receipt(salt, event_id)),
            )
        )

    async def has_answered(self, consultation_id: int, voter: str) -> bool:
        db = await self._open()
        return bool(
            await db.fetchval(
                "SELECT 1 FROM consultations_anon_voters WHERE consultation_id = ? AND voter = ?",
                (consultation_id, voter),
            )
        )

    async def bundles(self, consultation_id: int) -> list[tuple[str, dict[int, str]]]:
        """Every set of answers, nameless, in the random order of their keys."""
        async with self._lock:
            db = await self._open()
            rows = await db.fetchall(
                "SELECT answers FROM consultations_anon_bundles WHERE consultation_id = ?"
                " ORDER BY bundle_key",
                (consultation_id,),
            )
        return [("", {int(k): v for k, v in json.loads(r[0]).items()}) for r in rows]

    async def voter_count(self, consultation_id: int) -> int:
        db = await self._open()
        return int(
            await db.fetchval(
                "SELECT COUNT(*) FROM consultations_anon_voters WHERE consultation_id = ?",
                (consultation_id,),
            )
            or 0
        )

    async def followers(self, consultation_id: int) -> list[str]:
        db = await self._open()
        rows = await db.fetchall(
            "SELECT voter FROM consultations_anon_voters WHERE consultation_id = ? AND follow = 1",
            (consultation_id,),
        )
        return [r[0] for r in rows]

    async def answered_by(self, voter: str) -> list[int]:
        db = await self._open()
        rows = await db.fetchall(
            "SELECT consultation_id FROM consultations_anon_voters WHERE voter = ?", (voter,)
        )
        return [r[0] for r in rows]

    async def forget(self, voter: str) -> int:
        """Replace the person among the voters by a random stand-in, so the turnout stays; their
        answers were never linked to them. (Nothing then stops them answering again while it is
        open: knowing they answered is exactly what they asked us to forget.)"""
        async with self._lock:
            db = await self._open()
            rows = await db.fetchall(
                "SELECT consultation_id FROM consultations_anon_voters WHERE voter = ?", (voter,)
            )
            stand_ins = [(r[0], FORGOTTEN + secrets.token_hex(8), 0) for r in rows]
            if stand_ins:
                async with db.transaction():
                    await self._rewrite(
                        "consultations_anon_voters", stand_ins, drop=lambda r: r[1] == voter
                    )
        return len(stand_ins)
