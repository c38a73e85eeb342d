"""Anonymous answers: who answered and what was answered, kept in the engine's private store
(:mod:`civicbot.storage.private_store`, the file ``private-consultations.sqlite3``) so that no copy
of the files, taken at any moment or in pairs, pairs a respondent with their answers.

Who answered (and whether they want the council's response) is one side; each person's answers,
as one bundle, are the other, written only in shuffled batches of at least the consultation's
``counts_minimum`` (fixed when it opened), the rest at the close. A bundle waiting in memory when
the bot stops is lost: its respondent is dropped and asked to answer again, as the walk-through
already did for answers in progress (:meth:`AnonymousAnswers.lost`).

Anonymous answers cannot be changed once sent: changing them would need exactly the link this
store refuses to keep. The walk-through says so before the last step.

Answers from before the private store (``consultations-anonymous.sqlite3``) are moved into it
on the first start and the old file removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from pathlib import Path

import aiosqlite

from civicbot.api import ALREADY_TOOK_PART, Database, Lost, PrivateStore

log = logging.getLogger(__name__)

LEGACY_FILE = "consultations-anonymous.sqlite3"
FORGOTTEN = "forgotten:"
STORED, ALREADY = "stored", "already"


def receipt(salt: str, event_id: str) -> str:
    return hashlib.blake2s(f"{salt}:{event_id}".encode(), digest_size=16).hexdigest()


def item(consultation_id: int) -> str:
    return f"consultation:{consultation_id}"


def _number(name: str) -> int:
    return int(name.split(":")[1])


def _remove_database_files(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class AnonymousAnswers:
    """The consultations plugin's view of its private store."""

    def __init__(self, main: Database, private: PrivateStore | None = None):
        self.main = main
        self.private = private or PrivateStore(main, "consultations")
        self._imported = False

    async def _ready(self) -> PrivateStore:
        if not self._imported:
            self._imported = True
            await self._move_legacy_rows()
        return self.private

    async def close(self) -> None:
        await self.private.close()

    async def _move_legacy_rows(self) -> None:
        row = await self.main.fetchone("SELECT file FROM pragma_database_list WHERE name = 'main'")
        main_file = str(row[0]) if row is not None and row[0] else ""
        legacy = Path(main_file).with_name(LEGACY_FILE) if main_file else None
        if legacy is None or not legacy.exists():
            return
        old = Database(await aiosqlite.connect(str(legacy), isolation_level=None))
        try:
            tables = set(await old.table_names())
            voters = bundles = []
            if "consultations_anon_voters" in tables:
                voters = await old.fetchall(
                    "SELECT consultation_id, voter, follow FROM consultations_anon_voters"
                )
                bundles = await old.fetchall(
                    "SELECT consultation_id, answers FROM consultations_anon_bundles"
                )
        finally:
            await old.close()
        await self.private.import_rows(
            [(item(v[0]), str(v[1]), "", "follow" if v[2] else "") for v in voters],
            [(item(b[0]), str(b[1])) for b in bundles],
        )
        await asyncio.to_thread(_remove_database_files, legacy)
        log.info("moved %d anonymous answers into the private store", len(bundles))

    async def submit(
        self,
        consultation_id: int,
        salt: str,
        voter: str,
        event_id: str,
        answers: dict[int, str],
        follow: bool,
        batch: int = 1,
    ) -> str:
        """Take one person's answers: "stored" (also for the same event again) or "already".
        They are written with ``batch`` - 1 others at least (see the module's docstring)."""
        store = await self._ready()
        status = await store.take_part(
            item(consultation_id),
            voter,
            json.dumps(answers),
            batch=batch,
            receipt=receipt(salt, event_id),
            extra="follow" if follow else "",
        )
        return ALREADY if status == ALREADY_TOOK_PART else STORED

    async def lost(self) -> list[Lost]:
        """Answers that were in memory when the bot stopped: their people may answer again,
        and are asked to (then :meth:`asked_again`). ``item`` is ``consultation:<id>``."""
        store = await self._ready()
        return [x for x in await store.recover() if x.item.startswith("consultation:")]

    async def asked_again(self, lost: list[Lost]) -> None:
        await (await self._ready()).asked_again(lost)

    async def replayed(self, consultation_id: int, salt: str, event_id: str) -> bool:
        store = await self._ready()
        return await store.receipt_of(item(consultation_id), receipt(salt, event_id))

    async def has_answered(self, consultation_id: int, voter: str) -> bool:
        return await (await self._ready()).took_part(item(consultation_id), voter)

    async def bundles(
        self, consultation_id: int, closing_minimum: int | None = None
    ) -> list[tuple[str, dict[int, str]]]:
        """Every set of answers on disk, nameless, in the random order of their keys. Once it
        has closed, pass its threshold: what waits is written first (or dropped below it)."""
        store = await self._ready()
        if closing_minimum is not None:
            await store.seal(item(consultation_id), closing_minimum)
        rows = [json.loads(p) for p in await store.contributions(item(consultation_id))]
        return [("", {int(k): v for k, v in r.items()}) for r in rows]

    async def voter_count(self, consultation_id: int) -> int:
        return await (await self._ready()).count(item(consultation_id))

    async def followers(self, consultation_id: int) -> list[str]:
        store = await self._ready()
        return [
            who
            for who, extra in await store.participants(item(consultation_id))
            if extra == "follow" and not who.startswith(FORGOTTEN)
        ]

    async def answered_by(self, voter: str) -> list[int]:
        store = await self._ready()
        return [_number(i) for i in await store.items_of(voter) if i.startswith("consultation:")]

    async def forget(self, voter: str) -> int:
        """Replace the person among the respondents by a random stand-in, so the turnout stays;
        their answers were never linked to them. (Nothing then stops them answering again while
        it is open: knowing they answered is exactly what they asked us to forget.)"""
        store = await self._ready()
        mine = await store.items_of(voter)
        plan: dict[str, str | None] = {i: FORGOTTEN + secrets.token_hex(8) for i in mine}
        return await store.replace_participant(voter, plan)
