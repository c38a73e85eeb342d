"""Secret ballots: who voted and what was chosen, kept in the engine's private store
(:mod:`civicbot.storage.private_store`, the file ``private-polls.sqlite3``) so that no copy of the
files, taken at any moment or in pairs, pairs a voter with a ballot.

The store keeps the voters (with a salted hash of their ``!vote`` event, to recognise a replay)
apart from the ballots, and writes ballots only in shuffled batches of at least the poll's
``min_secret_voters`` (fixed when the poll opened), the rest at the close. A ballot waiting in
memory when the bot stops is asked for again (:meth:`SecretBallots.lost`).

Ballots from before the private store (``secret-ballots.sqlite3``, or older still the main
database) are moved into it on the first start and the old copies removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import aiosqlite
from civicbot_plugins.polls.models import ANONYMOUS, OPEN, Poll, anonymous_voter

from civicbot.api import (
    ALREADY_TOOK_PART,
    CommandError,
    Database,
    Lost,
    PrivateStore,
    PrivateStoreBusy,
    failpoints,
)

log = logging.getLogger(__name__)

COUNTED, ALREADY, CLOSED = "counted", "already", "closed"
LEGACY_FILE = "secret-ballots.sqlite3"
BUSY_REPLY = (
    "I couldn't record your secret vote just now (my ballot box is busy). Nothing was counted: "
    "please send the same vote again in a minute."
)


def receipt(poll: Poll, event_id: str) -> str:
    """What is kept of the ``!vote`` event that cast a ballot: enough to know it again, not
    enough to find it without the poll's salt."""
    return hashlib.blake2s(f"{poll.salt}:{event_id}".encode(), digest_size=16).hexdigest()


def remove_database_files(path: Path) -> None:
    """A SQLite file and whatever journal or log it left beside it."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def item(poll_id: int) -> str:
    return f"poll:{poll_id}"


class SecretBallots:
    """The polls plugin's view of its private store. ``main`` is the main database: the
    poll's state (open or not) is read there, under the store's lock."""

    def __init__(self, main: Database, private: PrivateStore):
        self.main = main
        self.private = private
        self._imported = False

    async def _ready(self) -> PrivateStore:
        if not self._imported:
            self._imported = True
            await self._move_legacy_rows()
        return self.private

    async def close(self) -> None:
        await self.private.close()

    async def _move_legacy_rows(self) -> None:
        """Ballots kept before the private store: in ``secret-ballots.sqlite3`` or, older, in
        the main database. Moved in (ballots under new random keys), then removed there."""
        voters: list[tuple[str, str, str, str]] = []
        ballots: list[tuple[str, str]] = []
        row = await self.main.fetchone("SELECT file FROM pragma_database_list WHERE name = 'main'")
        main_file = str(row[0]) if row is not None and row[0] else ""
        legacy = Path(main_file).with_name(LEGACY_FILE) if main_file else None
        sources: list[Database] = [self.main]
        if legacy is not None and legacy.exists():
            sources.append(Database(await aiosqlite.connect(str(legacy), isolation_level=None)))
        for source in sources:
            if "polls_secret_voters" not in set(await source.table_names()):
                continue
            columns = {
                r[1] for r in await source.fetchall("PRAGMA table_info(polls_secret_voters)")
            }
            mark = "receipt" if "receipt" in columns else "''"
            for r in await source.fetchall(
                f"SELECT poll_id, voter, {mark} FROM polls_secret_voters"
            ):
                voters.append((item(r[0]), str(r[1]), str(r[2]), ""))
            for r in await source.fetchall(
                "SELECT poll_id, answers, reason FROM polls_secret_ballots"
            ):
                ballots.append((item(r[0]), json.dumps([json.loads(r[1]), r[2]])))
        if voters or ballots:
            await self.private.import_rows(voters, ballots)
            log.info("moved %d secret ballots into the private store", len(ballots))
        if "polls_secret_voters" in set(await self.main.table_names()):
            async with self.main.transaction():
                for table in (
                    "polls_secret_voters",
                    "polls_secret_ballots",
                    "polls_secret_receipts",
                ):
                    await self.main.execute(f"DELETE FROM {table}")
            await self.main.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
        if len(sources) > 1:
            await sources[1].close()
            assert legacy is not None
            await asyncio.to_thread(remove_database_files, legacy)

    # -- casting -------------------------------------------------------------------------------
    async def cast(
        self,
        poll: Poll,
        voter: str,
        event_id: str,
        answers: list[str],
        reason: str = "",
        in_time: bool = True,
        batch: int = 1,
    ) -> str:
        """Record a ballot: "counted" (also for the same event again, even once too late),
        "already" (one ballot each) or "closed" (also when not ``in_time``). The ballot is
        written with ``batch`` - 1 others at least. Raises a :class:`CommandError` asking for
        the vote again when the file stays locked."""
        store = await self._ready()

        async def still_open() -> str | None:
            state = await self.main.fetchval(
                "SELECT state FROM polls_polls WHERE id = ?", (poll.id,)
            )
            return CLOSED if state != OPEN or not in_time else None

        try:
            status = await store.take_part(
                item(poll.id),
                voter,
                json.dumps([answers, reason]),
                batch=batch,
                receipt=receipt(poll, event_id),
                aliases=(anonymous_voter(poll.salt, voter),),
                may=still_open,
            )
        except PrivateStoreBusy:
            raise CommandError(BUSY_REPLY) from None
        failpoints.hit("secret-ballot-stored")
        if status == ALREADY_TOOK_PART:
            return ALREADY
        if status == CLOSED:
            return CLOSED
        return COUNTED  # taken now, or this very vote again (SAME_CONTRIBUTION)

    async def lost(self) -> list[Lost]:
        """Ballots that were in memory when the bot stopped: their voters may vote again, and
        are asked to (then :meth:`asked_again`). ``item`` is ``poll:<id>``."""
        store = await self._ready()
        return [x for x in await store.recover() if x.item.startswith("poll:")]

    async def asked_again(self, lost: list[Lost]) -> None:
        await (await self._ready()).asked_again(lost)

    # -- reading -------------------------------------------------------------------------------
    async def has_voted(self, poll: Poll, voter: str) -> bool:
        store = await self._ready()
        return await store.took_part(item(poll.id), voter, (anonymous_voter(poll.salt, voter),))

    async def ballots(
        self, poll_id: int, closing_minimum: int | None = None
    ) -> list[tuple[list[str], str]]:
        """The ballots on disk. At the close, pass the poll's threshold: those still waiting
        are written first (or, below the threshold, dropped: the result is withheld)."""
        store = await self._ready()
        if closing_minimum is not None:
            await store.seal(item(poll_id), closing_minimum)
        rows = [json.loads(p) for p in await store.contributions(item(poll_id))]
        return [(list(r[0]), str(r[1])) for r in rows]

    async def voter_count(self, poll_id: int) -> int:
        return await (await self._ready()).count(item(poll_id))

    async def polls_of(self, user_id: str) -> list[int]:
        store = await self._ready()
        return sorted(
            int(i.split(":")[1]) for i in await store.items_of(user_id) if i.startswith("poll:")
        )

    # -- forgetting ----------------------------------------------------------------------------
    async def forget(self, user_id: str, polls: list[tuple[int, bool, str]]) -> tuple[int, int]:
        """Drop ``user_id``'s voter rows in closed polls and rename them to the poll's
        stand-in in open ones; ``polls`` is ``(poll id, closed, stand-in)``. Returns
        (removed, anonymised)."""
        store = await self._ready()
        mine = set(await store.items_of(user_id))
        plan: dict[str, str | None] = {
            item(p): (None if closed else stand_in)
            for p, closed, stand_in in polls
            if item(p) in mine
        }
        await store.replace_participant(user_id, plan)
        renamed = sum(1 for v in plan.values() if v)
        return len(plan) - renamed, renamed

    async def drop_stand_ins(self, poll_id: int) -> None:
        """At a poll's close: the stand-ins of people forgotten while it was open go (its
        result holds their totals, and the salt beside a stand-in would reveal it again)."""
        store = await self._ready()
        await store.drop_participants(item(poll_id), lambda who: who.startswith(ANONYMOUS))


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
