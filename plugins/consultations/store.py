"""The consultations tables in the main database: consultations, questions, named answers
(public and private consultations), statements waiting for approval, responses and updates,
and where each person's DM walk-through has got to. Anonymous answers live elsewhere
(:mod:`anonymous`)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from civicbot_plugins.consultations.models import (
    COLUMNS,
    FORGOTTEN,
    Consultation,
    Update,
    consultation_of,
)
from civicbot_plugins.consultations.service import (
    ANONYMOUS,
    CLOSED,
    OPEN,
    RESPONDED,
    UPDATED,
    Question,
)

from civicbot.api import Database


class ConsultationStore:
    """Repository over the ``consultations_*`` tables of the main database."""

    def __init__(self, db: Database):
        self.db = db
        # Who has a walk-through going, read once: every plain message asks, and almost
        # nobody has one, so the answer must not cost a query. This store writes every change.
        self._walkers: set[str] | None = None

    async def create(
        self,
        source_event: str,
        room_id: str,
        author: str,
        spec: Any,
        closes_at: int,
        now: int,
        counts_minimum: int = 0,
    ) -> Consultation:
        async with self.db.transaction():
            found = await self.db.fetchval(
                "SELECT id FROM consultations_consultations WHERE source_event = ?", (source_event,)
            )
            if found is None:
                await self.db.execute(
                    "INSERT INTO consultations_consultations (source_event, room_id, author, title,"
                    " description, visibility, moderated, closes_at, state, salt, created_at,"
                    " counts_minimum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        source_event,
                        room_id,
                        author,
                        spec.title,
                        spec.description,
                        spec.visibility,
                        int(spec.moderated),
                        closes_at,
                        OPEN,
                        secrets.token_hex(16),
                        now,
                        counts_minimum,
                    ),
                )
                found = await self.db.fetchval("SELECT last_insert_rowid()")
                await self.db.executemany(
                    "INSERT INTO consultations_questions VALUES (?, ?, ?, ?, ?, NULL)",
                    [
                        (found, q.number, q.kind, q.prompt, json.dumps(q.options))
                        for q in spec.questions
                    ],
                )
        made = await self.get(int(found))
        assert made is not None
        return made

    async def get(self, consultation_id: int) -> Consultation | None:
        row = await self.db.fetchone(
            f"SELECT {COLUMNS} FROM consultations_consultations WHERE id = ?", (consultation_id,)
        )
        return consultation_of(row) if row else None

    async def in_room(self, room_id: str, limit: int = 20) -> list[Consultation]:
        rows = await self.db.fetchall(
            f"SELECT {COLUMNS} FROM consultations_consultations WHERE room_id = ?"
            " ORDER BY state = 'open' DESC, id DESC LIMIT ?",
            (room_id, limit),
        )
        return [consultation_of(r) for r in rows]

    async def in_state(self, *states: str) -> list[Consultation]:
        marks = ", ".join("?" * len(states))
        rows = await self.db.fetchall(
            f"SELECT {COLUMNS} FROM consultations_consultations WHERE state IN ({marks})", states
        )
        return [consultation_of(r) for r in rows]

    async def set_root(self, consultation_id: int, event_id: str) -> None:
        await self.db.execute(
            "UPDATE consultations_consultations SET root_event = ? WHERE id = ?",
            (event_id, consultation_id),
        )

    async def close(self, consultation_id: int, now: int, event_id: str | None = None) -> bool:
        """Open → closed (by the command ``event_id``, or by its deadline); False when it was
        already closed (a second close does nothing)."""
        changed = await self.db.execute_rowcount(
            "UPDATE consultations_consultations SET state = ?, closed_at = ?, close_event = ?"
            " WHERE id = ? AND state = ?",
            (CLOSED, now, event_id, consultation_id, OPEN),
        )
        return changed > 0

    async def mark_summary_posted(self, consultation_id: int) -> bool:
        """Mark the summary and the CSV promised; False when they were already."""
        changed = await self.db.execute_rowcount(
            "UPDATE consultations_consultations SET summary_posted = 1"
            " WHERE id = ? AND summary_posted = 0",
            (consultation_id,),
        )
        return changed > 0

    async def mark_overdue_noticed(self, consultation_id: int, now: int) -> bool:
        changed = await self.db.execute_rowcount(
            "UPDATE consultations_consultations SET overdue_noticed_at = ?"
            " WHERE id = ? AND overdue_noticed_at IS NULL",
            (now, consultation_id),
        )
        return changed > 0

    # -- questions and statements --------------------------------------------------------------
    async def questions(self, consultation_id: int) -> list[Question]:
        rows = await self.db.fetchall(
            "SELECT number, kind, prompt, options FROM consultations_questions"
            " WHERE consultation_id = ? ORDER BY number",
            (consultation_id,),
        )
        return [Question(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    async def add_statement(self, consultation_id: int, text: str, proposer: str) -> int:
        """Append a statement as the next question; returns its number."""
        async with self.db.transaction():
            number = int(
                await self.db.fetchval(
                    "SELECT COALESCE(MAX(number), 0) + 1 FROM consultations_questions"
                    " WHERE consultation_id = ?",
                    (consultation_id,),
                )
            )
            await self.db.execute(
                "INSERT INTO consultations_questions VALUES (?, ?, 'statement', ?, '[]', ?)",
                (consultation_id, number, text, proposer),
            )
        return number

    async def statement_by_text(self, consultation_id: int, text: str) -> int | None:
        value = await self.db.fetchval(
            "SELECT number FROM consultations_questions WHERE consultation_id = ? AND prompt = ?",
            (consultation_id, text),
        )
        return int(value) if value is not None else None

    async def propose(
        self, consultation_id: int, source_event: str, text: str, proposer: str
    ) -> int:
        await self.db.execute(
            "INSERT OR IGNORE INTO consultations_pending (consultation_id, source_event, text,"
            " proposer) VALUES (?, ?, ?, ?)",
            (consultation_id, source_event, text, proposer),
        )
        return int(
            await self.db.fetchval(
                "SELECT id FROM consultations_pending WHERE source_event = ?", (source_event,)
            )
        )

    async def pending(self, consultation_id: int, pending_id: int) -> tuple[str, str, str] | None:
        row = await self.db.fetchone(
            "SELECT text, proposer, state FROM consultations_pending"
            " WHERE id = ? AND consultation_id = ?",
            (pending_id, consultation_id),
        )
        return (row[0], row[1], row[2]) if row else None

    async def waiting(self, consultation_id: int) -> list[tuple[int, str]]:
        rows = await self.db.fetchall(
            "SELECT id, text FROM consultations_pending"
            " WHERE consultation_id = ? AND state = 'waiting'",
            (consultation_id,),
        )
        return [(r[0], r[1]) for r in rows]

    async def decide(self, pending_id: int, state: str) -> None:
        await self.db.execute(
            "UPDATE consultations_pending SET state = ? WHERE id = ?", (state, pending_id)
        )

    # -- named answers -------------------------------------------------------------------------
    async def answer(
        self, consultation_id: int, respondent: str, number: int, value: str, now: int
    ) -> bool:
        """Store (or change) one answer; True when it replaced an earlier one."""
        async with self.db.transaction():
            earlier = await self.db.fetchval(
                "SELECT 1 FROM consultations_answers"
                " WHERE consultation_id = ? AND respondent = ? AND number = ?",
                (consultation_id, respondent, number),
            )
            await self.db.execute(
                "INSERT INTO consultations_answers VALUES (?, ?, ?, ?) ON CONFLICT"
                " (consultation_id, respondent, number) DO UPDATE SET value = excluded.value",
                (consultation_id, respondent, number, value),
            )
            await self.db.execute(
                "INSERT INTO consultations_respondents VALUES (?, ?, 0, ?)"
                " ON CONFLICT (consultation_id, respondent) DO NOTHING",
                (consultation_id, respondent, now),
            )
        return bool(earlier)

    async def set_follow(
        self, consultation_id: int, respondent: str, follow: bool, now: int
    ) -> None:
        await self.db.execute(
            "INSERT INTO consultations_respondents VALUES (?, ?, ?, ?) ON CONFLICT"
            " (consultation_id, respondent) DO UPDATE SET follow = excluded.follow",
            (consultation_id, respondent, int(follow), now),
        )

    async def answers_of(self, consultation_id: int, respondent: str) -> dict[int, str]:
        rows = await self.db.fetchall(
            "SELECT number, value FROM consultations_answers"
            " WHERE consultation_id = ? AND respondent = ?",
            (consultation_id, respondent),
        )
        return {r[0]: r[1] for r in rows}

    async def bundles(self, consultation_id: int) -> list[tuple[str, dict[int, str]]]:
        """Every respondent's answers, in name order."""
        rows = await self.db.fetchall(
            "SELECT respondent, number, value FROM consultations_answers"
            " WHERE consultation_id = ? ORDER BY respondent, number",
            (consultation_id,),
        )
        found: dict[str, dict[int, str]] = {}
        for who, number, value in rows:
            found.setdefault(who, {})[number] = value
        return list(found.items())

    async def followers(self, consultation_id: int) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT respondent FROM consultations_respondents"
            " WHERE consultation_id = ? AND follow = 1 ORDER BY respondent",
            (consultation_id,),
        )
        return [r[0] for r in rows if not str(r[0]).startswith(FORGOTTEN)]

    async def respondent_count(self, consultation_id: int) -> int:
        return int(
            await self.db.fetchval(
                "SELECT COUNT(DISTINCT respondent) FROM consultations_answers"
                " WHERE consultation_id = ?",
                (consultation_id,),
            )
            or 0
        )

    async def answered_by(self, user_id: str) -> list[int]:
        rows = await self.db.fetchall(
            "SELECT consultation_id FROM consultations_respondents WHERE respondent = ?", (user_id,)
        )
        return [r[0] for r in rows]

    # -- responses and updates -----------------------------------------------------------------
    async def recorded_update(self, source_event: str) -> bool:
        """Whether the response or update typed as ``source_event`` is recorded (a command
        replayed after a crash)."""
        found = await self.db.fetchval(
            "SELECT 1 FROM consultations_updates WHERE source_event = ?", (source_event,)
        )
        return found is not None

    async def add_update(
        self,
        c: Consultation,
        source_event: str,
        kind: str,
        status: str,
        text: str,
        author: str,
        now: int,
    ) -> bool:
        """Record a response or update; False when this event was recorded already."""
        async with self.db.transaction():
            added = await self.db.execute_rowcount(
                "INSERT OR IGNORE INTO consultations_updates (consultation_id, source_event, kind,"
                " status, text, author, posted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (c.id, source_event, kind, status, text, author, now),
            )
            if added:
                state = RESPONDED if kind == "response" else UPDATED
                await self.db.execute(
                    "UPDATE consultations_consultations SET state = ?, status = ?,"
                    " responded_at = COALESCE(responded_at, ?) WHERE id = ?",
                    (state, status, now, c.id),
                )
        return bool(added)

    async def updates(self, consultation_id: int) -> list[Update]:
        rows = await self.db.fetchall(
            "SELECT kind, status, text, author, posted_at FROM consultations_updates"
            " WHERE consultation_id = ? ORDER BY id",
            (consultation_id,),
        )
        return [Update(*r) for r in rows]

    async def updates_in_room(self, room_id: str) -> dict[int, list[Update]]:
        """Every response and update of the room's consultations, by consultation, in order
        (one query for the public page, whatever the number of consultations)."""
        rows = await self.db.fetchall(
            "SELECT u.consultation_id, u.kind, u.status, u.text, u.author, u.posted_at"
            " FROM consultations_updates u JOIN consultations_consultations c"
            " ON c.id = u.consultation_id WHERE c.room_id = ? ORDER BY u.id",
            (room_id,),
        )
        found: dict[int, list[Update]] = {}
        for r in rows:
            found.setdefault(r[0], []).append(Update(*r[1:]))
        return found

    async def updates_between(
        self, room_id: str, since: int, until: int
    ) -> list[tuple[int, str, str | None, Update]]:
        """(id, title, thread root, update) of the responses and updates posted in the room
        in [since, until): they are posted in the consultation's thread."""
        rows = await self.db.fetchall(
            "SELECT c.id, c.title, c.root_event, u.kind, u.status, u.text, u.author, u.posted_at"
            " FROM consultations_updates u JOIN consultations_consultations c"
            " ON c.id = u.consultation_id WHERE c.room_id = ? AND u.posted_at >= ?"
            " AND u.posted_at < ? ORDER BY u.id",
            (room_id, since, until),
        )
        return [(r[0], r[1], r[2], Update(*r[3:])) for r in rows]

    # -- walk-throughs -------------------------------------------------------------------------
    async def load_walkers(self) -> None:
        rows = await self.db.fetchall("SELECT user_id FROM consultations_walks")
        self._walkers = {row[0] for row in rows}

    def may_walk(self, user_id: str) -> bool:
        """Whether ``user_id`` may have a walk-through going (True until the list is read)."""
        return self._walkers is None or user_id in self._walkers

    async def walk(self, user_id: str) -> tuple[int, str, int] | None:
        if self._walkers is None:
            await self.load_walkers()
        assert self._walkers is not None
        if user_id not in self._walkers:
            return None
        row = await self.db.fetchone(
            "SELECT consultation_id, room_id, step FROM consultations_walks WHERE user_id = ?",
            (user_id,),
        )
        return (row[0], row[1], row[2]) if row else None

    async def set_walk(self, user_id: str, consultation_id: int, room_id: str, step: int) -> None:
        await self.db.execute(
            "INSERT INTO consultations_walks VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE"
            " SET consultation_id = excluded.consultation_id, room_id = excluded.room_id,"
            " step = excluded.step",
            (user_id, consultation_id, room_id, step),
        )
        if self._walkers is not None:
            self._walkers.add(user_id)

    async def end_walk(self, user_id: str) -> None:
        await self.db.execute("DELETE FROM consultations_walks WHERE user_id = ?", (user_id,))
        if self._walkers is not None:
            self._walkers.discard(user_id)

    # -- people's data -------------------------------------------------------------------------
    async def export(self, user_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT c.id, c.title, a.number, a.value FROM consultations_answers a"
            " JOIN consultations_consultations c ON c.id = a.consultation_id"
            " WHERE a.respondent = ? AND c.visibility != ? ORDER BY c.id, a.number",
            (user_id, ANONYMOUS),
        )
        return [
            {"consultation": f"C-{r[0]}", "title": r[1], "question": r[2], "answer": r[3]}
            for r in rows
        ]

    async def forget(self, user_id: str) -> int:
        """Answers keep their content under a stand-in name; statements lose their proposer."""
        changed = 0
        async with self.db.transaction():
            for consultation_id in await self.answered_by(user_id):
                # One stand-in per consultation: nothing ties their answers together again.
                stand_in = FORGOTTEN + secrets.token_hex(8)
                changed += await self.db.execute_rowcount(
                    "UPDATE consultations_answers SET respondent = ?"
                    " WHERE respondent = ? AND consultation_id = ?",
                    (stand_in, user_id, consultation_id),
                )
                await self.db.execute(
                    "UPDATE consultations_respondents SET respondent = ?, follow = 0"
                    " WHERE respondent = ? AND consultation_id = ?",
                    (stand_in, user_id, consultation_id),
                )
            await self.db.execute(
                "UPDATE consultations_questions SET proposer = NULL WHERE proposer = ?", (user_id,)
            )
            await self.db.execute(
                "UPDATE consultations_pending SET proposer = '' WHERE proposer = ?", (user_id,)
            )
            await self.db.execute("DELETE FROM consultations_walks WHERE user_id = ?", (user_id,))
        if self._walkers is not None:
            self._walkers.discard(user_id)
        return changed
