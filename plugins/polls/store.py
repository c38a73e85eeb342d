"""SQL for the polls tables (see :mod:`models`); callers get dataclasses back."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from civicbot_plugins.polls.models import (
    ANONYMOUS,
    CANCELLED,
    CLOSED,
    NewPoll,
    Poll,
    anonymous_voter,
    to_iso,
)
from civicbot_plugins.polls.secret import SecretBallots
from civicbot_plugins.polls.service import Response

from civicbot.api import Database, PrivateStore


class PollStore:
    """Repository over the ``polls_`` tables."""

    def __init__(
        self, db: Database, keyed_hash: Callable[[str], str], private: PrivateStore | None = None
    ):
        """``keyed_hash`` turns each poll's stored nonce into its salt: the salt, and so the
        stand-ins it makes for forgotten voters, cannot be recomputed from the database."""
        self.db = db
        self._keyed_hash = keyed_hash
        self.secret = SecretBallots(db, private or PrivateStore(db, "polls"))

    # -- polls ---------------------------------------------------------------------------------
    async def create(self, new: NewPoll) -> tuple[Poll, bool]:
        """Insert a poll keyed by the ``!poll`` event; a replayed event finds the first one."""
        options = json.dumps([{"id": o.id, "text": o.text} for o in new.options])
        rowcount = await self.db.execute_rowcount(
            "INSERT INTO polls_polls (room_id, source_event_id, creator, question, kind,"
            " max_selections, options, secret, hidden, timezone, salt, created_at, closes_at,"
            " thread_root, min_secret_voters) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(source_event_id) DO NOTHING",
            (
                new.room_id,
                new.source_event_id,
                new.creator,
                new.question,
                new.kind.value,
                new.max_selections,
                options,
                int(new.secret),
                int(new.hidden),
                new.timezone,
                secrets.token_hex(16),
                to_iso(new.created_at),
                to_iso(new.closes_at),
                new.thread_root,
                new.min_secret_voters,
            ),
        )
        poll = await self._one("source_event_id = ?", (new.source_event_id,))
        assert poll is not None
        return poll, rowcount > 0

    async def _one(self, where: str, params: tuple[Any, ...]) -> Poll | None:
        row = await self.db.fetchone(f"SELECT * FROM polls_polls WHERE {where}", params)
        return self._poll(row) if row is not None else None

    async def _many(self, where: str, params: tuple[Any, ...] = ()) -> list[Poll]:
        rows = await self.db.fetchall(f"SELECT * FROM polls_polls WHERE {where}", params)
        return [self._poll(row) for row in rows]

    def _poll(self, row: Any) -> Poll:
        return replace(Poll.from_row(row), salt=self._keyed_hash(f"poll-salt:{row['salt']}"))

    async def get(self, poll_id: int) -> Poll | None:
        return await self._one("id = ?", (poll_id,))

    async def by_source(self, event_id: str) -> Poll | None:
        return await self._one("source_event_id = ?", (event_id,))

    async def unfinished(self) -> list[Poll]:
        """Polls whose close has not been announced yet (open, or closing when we stopped)."""
        return await self._many("state IN ('open', 'closing') ORDER BY id")

    async def open_in(self, room_id: str) -> list[Poll]:
        return await self._many("room_id = ? AND state = 'open' ORDER BY closes_at", (room_id,))

    async def open_anywhere(self) -> list[Poll]:
        return await self._many("state = 'open' ORDER BY closes_at")

    async def mark_posted(
        self, poll_id: int, start_event_id: str | None, text_event_id: str
    ) -> None:
        await self.db.execute(
            "UPDATE polls_polls SET start_event_id = ?, text_event_id = ?,"
            " state = CASE state WHEN 'posting' THEN 'open' ELSE state END WHERE id = ?",
            (start_event_id, text_event_id, poll_id),
        )

    async def apply_edit(self, poll_id: int, new: NewPoll, edit_event_id: str) -> bool:
        """Replace an open poll's question, options and settings, once per ``!poll edit`` event
        and only while nobody has voted openly (checked in the same statement as the change, so
        a vote arriving meanwhile wins; the caller checks secret ballots, which the bot receives
        only through commands handled one at a time). True when this call changed it."""
        options = json.dumps([{"id": o.id, "text": o.text} for o in new.options])
        changed = await self.db.execute_rowcount(
            "UPDATE polls_polls SET question = ?, kind = ?, max_selections = ?, options = ?,"
            " secret = ?, hidden = ?, closes_at = ?, reminder_sent = 0, edits = edits + 1,"
            " edit_event_id = ? WHERE id = ? AND state = 'open'"
            " AND (edit_event_id IS NULL OR edit_event_id != ?)"
            " AND NOT EXISTS (SELECT 1 FROM polls_responses WHERE poll_id = ?)",
            (
                new.question,
                new.kind.value,
                new.max_selections,
                options,
                int(new.secret),
                int(new.hidden),
                to_iso(new.closes_at),
                edit_event_id,
                poll_id,
                edit_event_id,
                poll_id,
            ),
        )
        return changed > 0

    async def set_start_event(self, poll_id: int, start_event_id: str | None) -> None:
        await self.db.execute(
            "UPDATE polls_polls SET start_event_id = ? WHERE id = ?", (start_event_id, poll_id)
        )

    async def vote_count(self, poll_id: int) -> int:
        """How many votes of any kind (typed, buttons, withdrawn, secret) a poll has had."""
        found = await self.db.fetchval(
            "SELECT COUNT(*) FROM polls_responses WHERE poll_id = ?", (poll_id,)
        )
        return int(found or 0) + await self.secret.voter_count(poll_id)

    async def cancel(self, poll_id: int, by: str, now: datetime, event_id: str) -> bool:
        """open → cancelled, once. No result is kept, so the open votes behind it go too (who
        voted for what in a poll that never counted serves nobody)."""
        async with self.db.transaction():
            changed = await self.db.execute_rowcount(
                "UPDATE polls_polls SET state = 'cancelled', closed_at = ?, closed_by = ?,"
                " close_event_id = ? WHERE id = ? AND state = 'open'",
                (to_iso(now), by, event_id, poll_id),
            )
            if changed:
                await self.db.execute("DELETE FROM polls_responses WHERE poll_id = ?", (poll_id,))
        return changed > 0

    async def begin_close(
        self, poll_id: int, closed_by: str, now: datetime, close_event_id: str | None = None
    ) -> bool:
        """open → closing, once: True for the caller that gets to announce the results."""
        changed = await self.db.execute_rowcount(
            "UPDATE polls_polls SET state = 'closing', closed_at = ?, closed_by = ?,"
            " close_event_id = ? WHERE id = ? AND state = 'open'",
            (to_iso(now), closed_by, close_event_id, poll_id),
        )
        return changed > 0

    async def finish_close(
        self,
        poll_id: int,
        cutoff_ts: int | None,
        end_event_id: str | None,
        results_event_id: str,
        result: dict[str, Any],
    ) -> None:
        """closing → closed, keeping the result. The votes of people who asked to be forgotten
        while the poll was open counted under a salted stand-in, which the salt beside it would
        reveal again; their totals are in ``result`` now, so those rows go."""
        async with self.db.transaction():
            await self.db.execute(
                "UPDATE polls_polls SET state = 'closed', cutoff_ts = ?, end_event_id = ?,"
                " results_event_id = ?, result = ? WHERE id = ?",
                (cutoff_ts, end_event_id, results_event_id, json.dumps(result), poll_id),
            )
            await self.db.execute(
                "DELETE FROM polls_responses WHERE poll_id = ? AND voter LIKE ?",
                (poll_id, ANONYMOUS + "%"),
            )
            await self.db.execute("DELETE FROM polls_forgotten WHERE poll_id = ?", (poll_id,))
        await self.secret.drop_stand_ins(poll_id)

    async def set_flag(self, poll_id: int, column: str) -> None:
        assert column in ("reminder_sent", "review_sent")
        await self.db.execute(f"UPDATE polls_polls SET {column} = 1 WHERE id = ?", (poll_id,))

    async def set_outcome(
        self, poll_id: int, text: str, by: str, at: datetime, review_at: datetime | None
    ) -> None:
        await self.db.execute(
            "UPDATE polls_polls SET outcome = ?, outcome_by = ?, outcome_at = ?, review_at = ?,"
            " review_sent = 0 WHERE id = ?",
            (text, by, to_iso(at), to_iso(review_at) if review_at else None, poll_id),
        )

    async def reviews_due(self, now: datetime) -> list[Poll]:
        return await self._many(
            "review_at IS NOT NULL AND review_sent = 0 AND review_at <= ? ORDER BY review_at",
            (to_iso(now),),
        )

    async def in_room_between(
        self, room_id: str, column: str, since: str, until: str
    ) -> list[Poll]:
        assert column in ("created_at", "closed_at", "outcome_at")
        return await self._many(
            f"room_id = ? AND state NOT IN ('posting', 'cancelled')"
            f" AND {column} >= ? AND {column} < ?"
            f" ORDER BY {column}",
            (room_id, since, until),
        )

    async def decided_in(self, room_id: str) -> list[tuple[int, str]]:
        """(id, what may still change: outcome and result message) of the closed polls here
        with a published result, newest first (the public page reads only what changed)."""
        rows = await self.db.fetchall(
            "SELECT id, coalesce(outcome_at, '') || '|' || coalesce(results_event_id, '')"
            " || '|' || coalesce(outcome, '')"
            " FROM polls_polls WHERE room_id = ? AND state = 'closed' AND result IS NOT NULL"
            " ORDER BY closed_at DESC, id DESC",
            (room_id,),
        )
        return [(row[0], row[1]) for row in rows]

    # -- responses (open ballots: button votes and !vote) --------------------------------------
    async def add_response(
        self,
        poll_id: int,
        event_id: str,
        voter: str,
        answers: object,
        ts: int,
        via: str,
        reason: str = "",
    ) -> bool:
        changed = await self.db.execute_rowcount(
            "INSERT INTO polls_responses (event_id, poll_id, voter, answers, ts, via, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING",
            (event_id, poll_id, voter, json.dumps(answers), ts, via, reason),
        )
        return changed > 0

    async def responses(self, poll_id: int) -> list[Response]:
        rows = await self.db.fetchall(
            "SELECT voter, answers, ts, reason FROM polls_responses WHERE poll_id = ?"
            " ORDER BY rowid",
            (poll_id,),
        )
        decoded: dict[str, object] = {}  # most responses share a handful of answer lists

        def answers(text: str) -> object:
            found = decoded.get(text)
            if found is None:
                found = decoded[text] = json.loads(text)
            return found

        return [Response(r[0], answers(r[1]), r[2], r[3]) for r in rows]

    async def latest_answers_of(self, user_id: str, poll_ids: list[int]) -> dict[int, object]:
        """``user_id``'s latest stored answer in each of ``poll_ids`` they answered (the latest
        response counts, as clients tally; an empty list is an unvote)."""
        found: dict[int, object] = {}
        for start in range(0, len(poll_ids), 500):
            chunk = poll_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self.db.fetchall(
                f"SELECT poll_id, answers FROM polls_responses WHERE voter = ?"
                f" AND poll_id IN ({marks}) ORDER BY ts, rowid",
                (user_id, *chunk),
            )
            for poll_id, answers in rows:
                found[poll_id] = json.loads(answers)
        return found

    async def responses_of_polls(self, poll_ids: list[int]) -> dict[int, list[Response]]:
        """The stored responses of many polls, in one query per 500 polls (the digest counts
        the voters of every poll opened in a week; one query each would dominate it)."""
        found: dict[int, list[Response]] = {}
        decoded: dict[str, object] = {}
        for start in range(0, len(poll_ids), 500):
            chunk = poll_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self.db.fetchall(
                "SELECT poll_id, voter, answers, ts, reason FROM polls_responses"
                f" WHERE poll_id IN ({marks}) ORDER BY rowid",
                chunk,
            )
            for r in rows:
                answers = decoded.get(r[2])
                if answers is None:
                    answers = decoded[r[2]] = json.loads(r[2])
                found.setdefault(r[0], []).append(Response(r[1], answers, r[3], r[4]))
        return found

    async def replace_button_responses(
        self, poll_id: int, found: list[tuple[str, str, object, int]], as_of_ts: int
    ) -> int:
        """Make the stored button votes the homeserver's (event id, voter, answers, ts). Stored
        ones it no longer has were redacted, unless they are newer than ``as_of_ts`` (when the
        fetch began): those arrived through the sync meanwhile. Returns how many were new."""
        keep = {event_id for event_id, *_ in found}
        async with self.db.transaction():
            stored = await self.db.fetchall(
                "SELECT event_id, ts FROM polls_responses WHERE poll_id = ? AND via = 'button'",
                (poll_id,),
            )
            gone = [(row[0],) for row in stored if row[0] not in keep and row[1] < as_of_ts]
            await self.db.executemany("DELETE FROM polls_responses WHERE event_id = ?", gone)
            known = {row[0] for row in stored}
            new = [
                (event_id, poll_id, voter, json.dumps(answers), ts)
                for event_id, voter, answers, ts in found
                if event_id not in known
            ]
            await self.db.executemany(
                "INSERT INTO polls_responses (event_id, poll_id, voter, answers, ts, via)"
                " VALUES (?, ?, ?, ?, ?, 'button') ON CONFLICT(event_id) DO NOTHING",
                new,
            )
        return len(new)

    async def delete_response(self, event_id: str, room_id: str) -> int:
        """Forget a redacted vote, if it was given in ``room_id`` (where the redaction was)."""
        return await self.db.execute_rowcount(
            "DELETE FROM polls_responses WHERE event_id = ?"
            " AND poll_id IN (SELECT id FROM polls_polls WHERE room_id = ?)",
            (event_id, room_id),
        )

    async def forgotten_hashes(self, poll_id: int) -> set[str]:
        rows = await self.db.fetchall(
            "SELECT voter_hash FROM polls_forgotten WHERE poll_id = ?", (poll_id,)
        )
        return {row[0] for row in rows}

    # -- privacy -------------------------------------------------------------------------------
    async def created_by(self, user_id: str) -> list[Poll]:
        """Polls ``user_id`` started, closed or recorded the outcome of."""
        return await self._many(
            "creator = ? OR closed_by = ? OR outcome_by = ? ORDER BY id", (user_id,) * 3
        )

    async def responses_of(self, user_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT poll_id, answers, ts, via, reason FROM polls_responses WHERE voter = ?"
            " ORDER BY poll_id, ts",
            (user_id,),
        )
        return [{**dict(row), "answers": json.loads(row["answers"])} for row in rows]

    async def forget(self, user_id: str) -> tuple[int, int]:
        """Remove who ``user_id`` voted for, keeping every total. Returns (removed, anonymised)."""
        removed = anonymised = 0
        secret_polls = await self.secret.polls_of(user_id)
        async with self.db.transaction():
            marks = ", ".join("?" * len(secret_polls))
            polls = await self._many(
                "id IN (SELECT poll_id FROM polls_responses WHERE voter = ?"
                " UNION SELECT id FROM polls_polls"
                " WHERE creator = ? OR closed_by = ? OR outcome_by = ?)"
                + (f" OR id IN ({marks})" if secret_polls else ""),
                (user_id,) * 4 + tuple(secret_polls),
            )
            for poll in polls:
                removed_here, anonymised_here = await self._forget_in(poll, user_id)
                removed += removed_here
                anonymised += anonymised_here
        # The secret file has its own lock: written only after the main transaction ends.
        secret_removed, secret_anonymised = await self.secret.forget(
            user_id,
            [
                (poll.id, poll.state == CLOSED, anonymous_voter(poll.salt, user_id))
                for poll in polls
                if poll.id in secret_polls
            ],
        )
        return removed + secret_removed, anonymised + secret_anonymised

    async def _forget_in(self, poll: Poll, user_id: str) -> tuple[int, int]:
        anonymised = 0
        if user_id in (poll.creator, poll.closed_by, poll.outcome_by):
            # The name goes even where it gave a right: only a moderator can now close the poll
            # or record its outcome. That is the price of being forgotten.
            anonymised += 1
            await self.db.execute(
                "UPDATE polls_polls SET creator = CASE creator WHEN ? THEN '' ELSE creator END,"
                " closed_by = CASE closed_by WHEN ? THEN '' ELSE closed_by END,"
                " outcome_by = CASE outcome_by WHEN ? THEN '' ELSE outcome_by END WHERE id = ?",
                (user_id, user_id, user_id, poll.id),
            )
        if poll.state in (CLOSED, CANCELLED):
            # The published result keeps the totals (a cancelled poll has none to keep); the
            # rows behind it can go.
            removed = await self.db.execute_rowcount(
                "DELETE FROM polls_responses WHERE poll_id = ? AND voter = ?", (poll.id, user_id)
            )
            if poll.result and any(
                b.get("voter") == user_id for b in poll.result.get("blocks", [])
            ):
                for block in poll.result["blocks"]:
                    if block.get("voter") == user_id:
                        block["voter"] = None
                await self.db.execute(
                    "UPDATE polls_polls SET result = ? WHERE id = ?",
                    (json.dumps(poll.result), poll.id),
                )
                anonymised += 1
            return removed, anonymised
        # Still open: the vote must keep counting (and keep replacing itself), just not by name.
        alias = anonymous_voter(poll.salt, user_id)
        await self.db.execute(
            "INSERT INTO polls_forgotten (poll_id, voter_hash) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            (poll.id, alias),
        )
        anonymised += await self.db.execute_rowcount(
            "UPDATE polls_responses SET voter = ? WHERE poll_id = ? AND voter = ?",
            (alias, poll.id, user_id),
        )
        return 0, anonymised
