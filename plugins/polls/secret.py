"""Secret ballots on disk: who voted and what was chosen, with nothing that pairs them.

``polls_secret_voters`` (who) and ``polls_secret_ballots`` (what) share only the poll number, and
``polls_secret_receipts`` (a salted hash of each ``!vote`` event, to recognise a replay) holds
neither. Keys alone do not hide the order of arrival: SQLite writes each new row wherever its page
has room, so the rows' physical positions on a page, or the page images that the write-ahead log
keeps for every commit, would give the order of arrival in each table, and the n-th voter would
match the n-th ballot. So a ballot is cast in one transaction that deletes every row of the three
tables (``secure_delete`` overwrites them) and writes them back in key order, the new ones
included: the pages then look exactly as they would if these rows had been written at once into
new tables, in key order (alphabetical for voters, random for ballots). Which rows there are
decides the layout; when they came does not. The whole tables, not only this poll's rows, because
a page shared with another poll would keep the freed slots where this poll's rows had been. After
the commit the log is checkpointed and truncated, so it keeps no earlier page images.

That costs about 10 ms per 1,000 secret votes stored (in all polls) for each ballot cast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from typing import Any

from civicbot_plugins.polls.models import OPEN, Poll, anonymous_voter

from civicbot.storage import Database

log = logging.getLogger(__name__)

COUNTED, ALREADY, CLOSED = "counted", "already", "closed"
# table, its columns, in key order (the primary key first)
_TABLES = (
    ("polls_secret_voters", ("poll_id", "voter")),
    ("polls_secret_ballots", ("ballot_key", "poll_id", "answers", "reason")),
    ("polls_secret_receipts", ("poll_id", "receipt")),
)
_KEY_WIDTH = {"polls_secret_voters": 2, "polls_secret_ballots": 1, "polls_secret_receipts": 2}


def receipt(poll: Poll, event_id: str) -> str:
    """What is kept of the ``!vote`` event that cast a ballot: enough to know it again, not
    enough to find it without the poll's salt."""
    return hashlib.blake2s(f"{poll.salt}:{event_id}".encode(), digest_size=16).hexdigest()


class SecretBallots:
    """Repository over the ``polls_secret_*`` tables."""

    def __init__(self, db: Database):
        self.db = db

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
        "already" (one ballot each) or "closed" (also when not ``in_time``)."""
        mark = receipt(poll, event_id)
        async with self.db.transaction():
            if await self.db.fetchval(
                "SELECT 1 FROM polls_secret_receipts WHERE poll_id = ? AND receipt = ?",
                (poll.id, mark),
            ):
                return COUNTED  # this very ballot, replayed after a crash: it was counted
            state = await self.db.fetchval("SELECT state FROM polls_polls WHERE id = ?", (poll.id,))
            if state != OPEN or not in_time:
                return CLOSED
            if await self.has_voted(poll, voter):
                return ALREADY
            await self.rewrite_in_key_order(
                {
                    "polls_secret_voters": (poll.id, voter),
                    "polls_secret_ballots": (
                        secrets.token_hex(16),
                        poll.id,
                        json.dumps(answers),
                        reason,
                    ),
                    "polls_secret_receipts": (poll.id, mark),
                }
            )
        await self.checkpoint()
        return COUNTED

    async def rewrite_in_key_order(self, new: dict[str, tuple[Any, ...]] | None = None) -> None:
        """Delete every row of the secret tables and write them back, with ``new`` rows (one per
        table) among them, in key order. Call inside a transaction."""
        new = new or {}
        for table, columns in _TABLES:
            names = ", ".join(columns)
            rows = [tuple(r) for r in await self.db.fetchall(f"SELECT {names} FROM {table}")]
            if table in new:
                rows.append(new[table])
            # Python orders str by code point, as SQLite's BINARY collation orders UTF-8 bytes.
            rows.sort(key=lambda row: row[: _KEY_WIDTH[table]])
            await self.db.execute(f"DELETE FROM {table}")
            marks = ", ".join("?" * len(columns))
            await self.db.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)

    async def checkpoint(self) -> None:
        """Move the log into the database and truncate it: no page images of earlier commits
        (which would show what each commit added) stay behind."""
        row = await self.db.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
        if row is not None and row[0]:
            log.warning("the database log could not be truncated after a secret ballot")

    async def has_voted(self, poll: Poll, voter: str) -> bool:
        return bool(
            await self.db.fetchval(
                "SELECT 1 FROM polls_secret_voters WHERE poll_id = ? AND voter IN (?, ?)",
                (poll.id, voter, anonymous_voter(poll.salt, voter)),
            )
        )

    async def ballots(self, poll_id: int) -> list[tuple[list[str], str]]:
        rows = await self.db.fetchall(
            "SELECT answers, reason FROM polls_secret_ballots WHERE poll_id = ?", (poll_id,)
        )
        return [(json.loads(row[0]), row[1]) for row in rows]

    async def voter_count(self, poll_id: int) -> int:
        return int(
            await self.db.fetchval(
                "SELECT COUNT(*) FROM polls_secret_voters WHERE poll_id = ?", (poll_id,)
            )
            or 0
        )

    async def polls_of(self, user_id: str) -> list[int]:
        rows = await self.db.fetchall(
            "SELECT poll_id FROM polls_secret_voters WHERE voter = ? ORDER BY poll_id", (user_id,)
        )
        return [row[0] for row in rows]
