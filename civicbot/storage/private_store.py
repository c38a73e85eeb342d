"""The private store: who took part in something secret, and what they said, never paired.

One design for every plugin that keeps unlinkable data (secret ballots, anonymous answers, a
third-party plugin's secret survey): a plugin gets its store from
:meth:`civicbot.core.context.PluginContext.private_store`, a SQLite file of its own beside the
main database (``private-<plugin>.sqlite3``), and stores through it only.

What must hold: no copy of ``data_dir`` taken at any instant, nor any pair of copies, links a
person to what they said. How:

* **Two sides, no shared key.** ``private_participants`` holds who took part in an item (and a
  receipt of the event they used, to recognise a replay); ``private_contributions`` holds what
  was said, under random keys. Nothing but the item is common to the two; no row has a time.
* **Contributions are written in shuffled batches only.** A contribution waits in memory with
  the others for the same item. Once ``2 × batch`` wait (a plugin passes its privacy threshold,
  e.g. ``min_secret_voters``), ``batch`` of them, chosen at random, are written in one
  transaction in random order, and the other ``batch`` keep waiting. So a write never adds
  fewer than ``batch`` contributions, and at the close (:meth:`PrivateStore.seal`) at least
  ``batch`` wait to be written together — or, when fewer than ``batch`` people took part at
  all, whose result is withheld anyway, nothing is written and they are dropped. A copy
  mid-write (a rollback journal beside the file) or a pair of copies therefore shows at least
  ``batch`` contributions arriving together with as many participants, never fewer.
* **Who is written at once, marked as waiting.** So a second contribution is refused at once,
  and after a crash the people whose contribution was only in memory are known and asked again
  (:meth:`PrivateStore.recover`); their rows go. The batch's participants are marked with a
  batch token before the batch is written and cleared after, so a crash between the two steps
  is finished on the next start rather than asked twice.
* **Pages in key order.** SQLite puts a new row after the previous one on its page, so row
  offsets would give the order of arrival. Every write empties the table it touches and writes
  it back in key order (:func:`~civicbot.storage.database.rewrite_in_key_order`), with
  ``secure_delete`` so a rewritten row leaves no old copy in free space.
* **A rollback journal, not a write-ahead log.** A WAL keeps one page image per commit while
  any reader holds it; a journal holds only the transaction in progress and is deleted at its
  commit. A reader holding the file makes a write wait (``busy_timeout``); if it never lets go,
  :class:`PrivateStoreBusy` asks the person to send it again, with nothing half-written.

Said plainly, what it costs: up to ``2 × batch - 1`` contributions per item live only in
memory, and are asked for again after a crash; anyone who can read the bot's memory (or the
homeserver's copy of the DMs) is outside what this protects against.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from civicbot import failpoints
from civicbot.storage.database import Database, Migration, rewrite_in_key_order

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 20_000  # how long a write waits for another reader of the file to let go
TAKEN, SAME, ALREADY = "taken", "same", "already"
COUNTED = ""  # a participant whose contribution is on disk
WAITING = "waiting"  # ... whose contribution is still in memory
LOST = "lost"  # ... whose contribution was in memory when the bot stopped: to be asked again

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE private_participants (
        item TEXT NOT NULL,
        who TEXT NOT NULL,
        receipt TEXT NOT NULL,
        extra TEXT NOT NULL,
        batch TEXT NOT NULL,
        PRIMARY KEY (item, who)
    ) WITHOUT ROWID;
    CREATE TABLE private_contributions (
        key TEXT PRIMARY KEY,
        item TEXT NOT NULL,
        payload TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE private_batches (
        token TEXT PRIMARY KEY,
        item TEXT NOT NULL
    ) WITHOUT ROWID
    """,
]
# table: (its columns, the key first; how many columns the key has)
TABLES = {
    "private_participants": (("item", "who", "receipt", "extra", "batch"), 2),
    "private_contributions": (("key", "item", "payload"), 1),
    "private_batches": (("token", "item"), 1),
}


class PrivateStoreBusy(Exception):
    """Another reader held the file for longer than ``BUSY_TIMEOUT_MS``: nothing was stored."""


@dataclass(frozen=True)
class Lost:
    """Someone whose contribution was only in memory when the bot stopped: ask them again."""

    item: str
    who: str
    extra: str


def coarse_time(at: datetime) -> datetime:
    """The UTC day of ``at``: the time a private item keeps. Its exact second, matched against
    any trace of when someone wrote to the bot, would name them."""
    day = at.astimezone(UTC)
    return day.replace(hour=0, minute=0, second=0, microsecond=0)


def file_for(main_file: str, scope: str) -> str:
    """The private store's file for ``scope`` beside the main database file (or in memory)."""
    return str(Path(main_file).with_name(f"private-{scope}.sqlite3")) if main_file else ":memory:"


class PrivateStore:
    """One plugin's private store. Items are the plugin's own strings (``"poll:12"``);
    payloads and ``extra`` are strings the plugin chooses (JSON, say)."""

    def __init__(self, main: Database, scope: str):
        self.main = main
        self.scope = scope
        self._db: Database | None = None
        self._lock = asyncio.Lock()  # one write at a time: checks, then the transactions
        self._waiting: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)

    # -- the file ------------------------------------------------------------------------------
    async def _open(self) -> Database:
        if self._db is None:
            row = await self.main.fetchone(
                "SELECT file FROM pragma_database_list WHERE name = 'main'"
            )
            path = file_for(str(row[0]) if row is not None and row[0] else "", self.scope)
            conn = await aiosqlite.connect(path, isolation_level=None)
            for pragma in (
                "journal_mode=DELETE",  # no log of past commits
                "synchronous=FULL",  # a write is on disk before the person is told
                "secure_delete=ON",  # a rewritten row leaves no old copy in free space
                "temp_store=MEMORY",
                f"busy_timeout={BUSY_TIMEOUT_MS}",
            ):
                await conn.execute(f"PRAGMA {pragma}")
            db = Database(conn)
            await db.migrate("private", MIGRATIONS)
            self._db = db
            await self._finish_or_undo()
        return self._db

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _rewrite(
        self,
        table: str,
        add: Iterable[tuple[Any, ...]] = (),
        drop: Callable[[tuple[Any, ...]], bool] | None = None,
    ) -> None:
        assert self._db is not None
        columns, width = TABLES[table]
        await rewrite_in_key_order(self._db, table, columns, width, list(add), drop)

    async def _finish_or_undo(self) -> None:
        """After a stop: a batch that reached the disk has its participants counted; anyone
        whose contribution never did is marked lost (no longer taking part, so they may send
        it again) until :meth:`asked_again` says they were told."""
        assert self._db is not None
        written = {r[0] for r in await self._db.fetchall("SELECT token FROM private_batches")}
        rows = [
            tuple(r)
            for r in await self._db.fetchall(
                "SELECT item, who, receipt, extra, batch FROM private_participants"
                " WHERE batch NOT IN ('', ?)",
                (LOST,),
            )
        ]
        done = [r for r in rows if r[4] in written]
        lost = [r for r in rows if r[4] not in written]
        if done:
            async with self._db.transaction():
                await self._rewrite(
                    "private_participants",
                    [(*r[:4], COUNTED) for r in done],
                    drop=lambda r: r[4] in written,
                )
        if written:
            async with self._db.transaction():
                await self._rewrite("private_batches", drop=lambda r: True)
        if lost:
            gone = {(r[0], r[1]) for r in lost}
            async with self._db.transaction():
                await self._rewrite(
                    "private_participants",
                    [(r[0], r[1], "", r[3], LOST) for r in lost],
                    drop=lambda r: (r[0], r[1]) in gone,
                )
            log.warning("%d private contributions were not stored before a stop", len(lost))

    async def recover(self) -> list[Lost]:
        """Whom to ask again: their contribution was in memory when the bot stopped, so they
        no longer count as taking part. They stay listed (across further stops) until
        :meth:`asked_again` is called for them, or until they take part again."""
        async with self._lock:
            db = await self._open()
            rows = await db.fetchall(
                "SELECT item, who, extra FROM private_participants WHERE batch = ?", (LOST,)
            )
        return [Lost(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def asked_again(self, lost: list[Lost]) -> None:
        """They have been told (or need not be): forget that they were lost."""
        if not lost:
            return
        done = {(x.item, x.who) for x in lost}
        async with self._lock:
            db = await self._open()
            async with db.transaction():
                await self._rewrite(
                    "private_participants",
                    drop=lambda r: r[4] == LOST and (r[0], r[1]) in done,
                )

    # -- taking part ---------------------------------------------------------------------------
    async def take_part(
        self,
        item: str,
        who: str,
        payload: str,
        *,
        batch: int,
        receipt: str = "",
        extra: str = "",
        aliases: tuple[str, ...] = (),
        may: Callable[[], Any] | None = None,
    ) -> str:
        """Record that ``who`` took part in ``item`` and hold ``payload`` for the next batch:
        TAKEN; SAME when ``who`` already took part with this ``receipt`` (a replay); ALREADY
        otherwise. ``aliases`` are other names ``who`` may be stored under (a stand-in).
        ``may`` is awaited under the store's lock before anything is written; it returns a
        refusal (any truthy value, returned as is) or None."""
        try:
            async with self._lock:
                db = await self._open()
                marks = ", ".join("?" for _ in (who, *aliases))
                kept = await db.fetchval(
                    "SELECT receipt FROM private_participants"
                    f" WHERE item = ? AND who IN ({marks}) AND batch != ?",
                    (item, who, *aliases, LOST),
                )
                if kept is not None:
                    return SAME if receipt and kept == receipt else ALREADY
                if may is not None and (refusal := await may()):
                    return str(refusal)
                async with db.transaction():
                    await self._rewrite(
                        "private_participants",
                        [(item, who, receipt, extra, WAITING)],
                        drop=lambda r: r[0] == item and r[1] == who,  # a lost row
                    )
                waiting = self._waiting[item]
                waiting.append((who, payload))
                size = max(1, batch)
                if len(waiting) >= 2 * size:
                    chosen = random.SystemRandom().sample(range(len(waiting)), size)
                    try:
                        await self._write_batch(item, [waiting[i] for i in chosen])
                    except sqlite3.OperationalError as exc:
                        if "locked" not in str(exc) and "busy" not in str(exc):
                            raise
                        # This person is recorded and their answer waits: the batch is
                        # written at the next chance (its people stay waiting meanwhile).
                        log.warning("a private batch waits for a reader to let go: %s", exc)
                        await _abandon(db)
                return TAKEN
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            log.warning("the private store stayed locked by another reader: %s", exc)
            if self._db is not None:
                await _abandon(self._db)
            raise PrivateStoreBusy(str(exc)) from None

    async def _write_batch(self, item: str, pairs: list[tuple[str, str]]) -> None:
        """Write ``pairs`` (who, what) of ``item``, shuffled, in three transactions: mark their
        people with a token; write the contributions (and the token); count the people."""
        assert self._db is not None
        if not pairs:
            return
        waiting = self._waiting[item]
        for pair in pairs:
            waiting.remove(pair)
        payloads = [payload for _, payload in pairs]
        people = {who for who, _ in pairs}
        random.SystemRandom().shuffle(payloads)
        token = secrets.token_hex(16)
        try:
            async with self._db.transaction():
                # Waiting, or marked by an earlier attempt that could not write its batch.
                rows = await self._db.fetchall(
                    "SELECT item, who, receipt, extra FROM private_participants"
                    " WHERE item = ? AND batch NOT IN (?, ?)",
                    (item, COUNTED, LOST),
                )
                marked = [(*tuple(r), token) for r in rows if r[1] in people]
                await self._rewrite(
                    "private_participants",
                    marked,
                    drop=lambda r: r[0] == item and r[4] not in (COUNTED, LOST) and r[1] in people,
                )
            failpoints.hit("private-batch-marked")
            async with self._db.transaction():
                await self._rewrite(
                    "private_contributions",
                    [(secrets.token_hex(16), item, p) for p in payloads],
                )
                await self._rewrite("private_batches", [(token, item)])
                failpoints.hit("private-batch-uncommitted")
            failpoints.hit("private-batch-written")
        except BaseException:
            waiting.extend(pairs)  # written at the next chance, or asked again after a stop
            raise
        await self._count(token, marked)

    async def _count(self, token: str, marked: list[tuple[Any, ...]]) -> None:
        assert self._db is not None
        async with self._db.transaction():
            await self._rewrite(
                "private_participants",
                [(*r[:4], COUNTED) for r in marked],
                drop=lambda r: r[4] == token,
            )
            await self._rewrite("private_batches", drop=lambda r: r[0] == token)

    async def seal(self, item: str, minimum: int) -> None:
        """The item closes: write everything that waits for it, together. When fewer than
        ``minimum`` people took part (a result the plugin withholds), what waits is dropped
        unwritten instead: a batch that small would show what they said beside who they are.
        Call it before reading :meth:`contributions` for the result."""
        async with self._lock:
            db = await self._open()
            pairs = list(self._waiting.get(item, []))
            total = await self.count(item)
            if total >= minimum:
                await self._write_batch(item, pairs)
                return
            self._waiting.pop(item, None)
            rows = await db.fetchall(
                "SELECT item, who, receipt, extra, batch FROM private_participants"
                " WHERE item = ? AND batch = ?",
                (item, WAITING),
            )
            if rows:
                async with db.transaction():
                    await self._rewrite(
                        "private_participants",
                        [(*tuple(r)[:4], COUNTED) for r in rows],
                        drop=lambda r: r[0] == item and r[4] == WAITING,
                    )

    # -- reading -------------------------------------------------------------------------------
    async def contributions(self, item: str) -> list[str]:
        """What was said in ``item`` and is on disk, in the random order of the keys. Call
        :meth:`seal` first to include what still waits."""
        async with self._lock:
            db = await self._open()
            rows = await db.fetchall(
                "SELECT payload FROM private_contributions WHERE item = ? ORDER BY key", (item,)
            )
        return [str(r[0]) for r in rows]

    async def waiting_count(self, item: str) -> int:
        """How many contributions to ``item`` wait in memory for their batch."""
        return len(self._waiting.get(item, []))

    async def took_part(self, item: str, who: str, aliases: tuple[str, ...] = ()) -> bool:
        db = await self._open()
        marks = ", ".join("?" for _ in (who, *aliases))
        return bool(
            await db.fetchval(
                "SELECT 1 FROM private_participants"
                f" WHERE item = ? AND who IN ({marks}) AND batch != ?",
                (item, who, *aliases, LOST),
            )
        )

    async def receipt_of(self, item: str, receipt: str) -> bool:
        """Whether some participant of ``item`` used the event with this receipt."""
        db = await self._open()
        return bool(
            await db.fetchval(
                "SELECT 1 FROM private_participants WHERE item = ? AND receipt = ? AND batch != ?",
                (item, receipt, LOST),
            )
        )

    async def participants(self, item: str) -> list[tuple[str, str]]:
        """``(who, extra)`` of everyone who took part in ``item`` (waiting ones included)."""
        db = await self._open()
        rows = await db.fetchall(
            "SELECT who, extra FROM private_participants WHERE item = ? AND batch != ?"
            " ORDER BY who",
            (item, LOST),
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def count(self, item: str) -> int:
        db = await self._open()
        return int(
            await db.fetchval(
                "SELECT COUNT(*) FROM private_participants WHERE item = ? AND batch != ?",
                (item, LOST),
            )
            or 0
        )

    async def items_of(self, who: str) -> list[str]:
        """Every item ``who`` took part in (for their data export)."""
        db = await self._open()
        rows = await db.fetchall(
            "SELECT item FROM private_participants WHERE who = ? AND batch != ? ORDER BY item",
            (who, LOST),
        )
        return [str(r[0]) for r in rows]

    # -- forgetting ----------------------------------------------------------------------------
    async def replace_participant(self, who: str, stand_ins: dict[str, str | None]) -> int:
        """``who``'s rows in the items of ``stand_ins``: renamed to the stand-in given, or
        dropped (None). Their contributions were never linked to them and stay."""
        async with self._lock:
            db = await self._open()
            rows = [
                tuple(r)
                for r in await db.fetchall(
                    "SELECT item, who, receipt, extra, batch FROM private_participants"
                    " WHERE who = ?",
                    (who,),
                )
                if r[0] in stand_ins or r[4] == LOST
            ]
            if not rows:
                return 0
            # A lost row (asked again, not yet answered) goes too: nothing to keep of it.
            rows = [r for r in rows if r[4] != LOST] + [
                (r[0], r[1], r[2], r[3], r[4]) for r in rows if r[4] == LOST
            ]
            renamed = [
                (r[0], stand_ins[r[0]], r[2], "", r[4])
                for r in rows
                if r[4] != LOST and stand_ins.get(r[0])
            ]
            mine = {(r[0], r[1]) for r in rows}
            for item, new in stand_ins.items():
                self._waiting[item] = [
                    (new or f"forgotten:{secrets.token_hex(8)}", p) if w == who else (w, p)
                    for w, p in self._waiting.get(item, [])
                ]
            async with db.transaction():
                await self._rewrite(
                    "private_participants", renamed, drop=lambda r: (r[0], r[1]) in mine
                )
        return sum(1 for r in rows if r[4] != LOST)

    async def drop_participants(self, item: str, which: Callable[[str], bool]) -> None:
        """Drop the participants of ``item`` whose name ``which`` is true for."""
        async with self._lock:
            db = await self._open()
            names = [w for w, _ in await self.participants(item) if which(w)]
            if not names:
                return
            async with db.transaction():
                await self._rewrite(
                    "private_participants", drop=lambda r: r[0] == item and which(str(r[1]))
                )

    async def import_rows(
        self, participants: list[tuple[str, str, str, str]], contributions: list[tuple[str, str]]
    ) -> None:
        """Bring in data kept before this store existed: ``(item, who, receipt, extra)`` as
        counted participants, ``(item, payload)`` under new random keys, all at once."""
        async with self._lock:
            db = await self._open()
            async with db.transaction():
                await self._rewrite("private_participants", [(*p, COUNTED) for p in participants])
                await self._rewrite(
                    "private_contributions",
                    [(secrets.token_hex(16), item, payload) for item, payload in contributions],
                )


async def _abandon(db: Database) -> None:
    """Roll back a transaction whose COMMIT was refused: a connection left mid-transaction
    would keep its lock and shut every other reader out."""
    try:
        await db.execute("ROLLBACK")
    except sqlite3.OperationalError:
        pass  # no transaction was open


def dumps(value: Any) -> str:
    """JSON with sorted keys: the same value always gives the same payload."""
    return json.dumps(value, sort_keys=True)
