"""SQL for the ``meetings_`` tables (see :mod:`models`); callers get dataclasses back."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from civicbot_plugins.meetings.models import (
    ANONYMOUS,
    CANCELLED,
    FIXED,
    PROPOSED,
    Meeting,
    from_iso,
    to_iso,
)
from civicbot_plugins.meetings.parsing import Proposal
from civicbot_plugins.meetings.service import Answer, Ballot, Rsvp

from civicbot.api import Database

_EVENT_COLUMNS = ("thread_root", "table_event_id", "poll_event_id", "announce_event_id")


class MeetingStore:
    """Repository over the ``meetings_`` tables."""

    def __init__(self, db: Database):
        self.db = db

    # -- meetings ------------------------------------------------------------------------------
    async def create(
        self,
        room_id: str,
        source_event_id: str,
        organiser: str,
        proposal: Proposal,
        now: datetime,
        thread_root: str | None = None,
    ) -> tuple[Meeting, bool]:
        """Store a proposal keyed by its ``!meet`` event; a replayed event finds the first one
        (False). A repeating meeting is stored as fixed at its first occurrence."""
        repeating = proposal.recurrence is not None
        async with self.db.transaction():
            existing = await self.by_source(source_event_id)
            if existing is not None:
                return existing, False
            meeting_id = await self.db.execute(
                "INSERT INTO meetings_meetings (room_id, source_event_id, organiser, title,"
                " duration_s, timezone, location, url, decide_by, state, start, fixed_slot,"
                " fixed_by, recurrence, uid_token, created_at, changed_at, thread_root)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    room_id,
                    source_event_id,
                    organiser,
                    proposal.title,
                    int(proposal.duration.total_seconds()),
                    proposal.zone.key,
                    proposal.location,
                    proposal.url,
                    to_iso(proposal.decide_by) if proposal.decide_by else None,
                    FIXED if repeating else PROPOSED,
                    to_iso(proposal.slots[0]) if repeating else None,
                    1 if repeating else None,
                    organiser if repeating else None,
                    json.dumps(proposal.recurrence.to_json()) if proposal.recurrence else None,
                    secrets.token_hex(8),
                    to_iso(now),
                    to_iso(now),
                    thread_root,
                ),
            )
            await self.db.executemany(
                "INSERT INTO meetings_slots (meeting_id, number, start) VALUES (?, ?, ?)",
                [(meeting_id, n, to_iso(s)) for n, s in enumerate(proposal.slots, start=1)],
            )
            if repeating:
                await self._update_ends(meeting_id)
            meeting = await self.get(meeting_id)
        assert meeting is not None
        return meeting, True

    async def get(self, meeting_id: int) -> Meeting | None:
        found = await self._many("id = ?", (meeting_id,))
        return found[0] if found else None

    async def by_source(self, event_id: str) -> Meeting | None:
        found = await self._many("source_event_id = ?", (event_id,))
        return found[0] if found else None

    async def by_poll_event(self, event_id: str) -> Meeting | None:
        """The meeting whose native availability poll is ``event_id`` (for poll responses)."""
        found = await self._many("poll_event_id = ?", (event_id,))
        return found[0] if found else None

    async def add_slot_poll(self, meeting_id: int, slot: int, event_id: str) -> None:
        await self.db.execute(
            "INSERT OR IGNORE INTO meetings_slot_polls (event_id, meeting_id, slot)"
            " VALUES (?, ?, ?)",
            (event_id, meeting_id, slot),
        )

    async def slot_polls(self, meeting_id: int) -> dict[int, str]:
        """Slot number → the event id of that time's yes / if need be / no poll."""
        rows = await self.db.fetchall(
            "SELECT slot, event_id FROM meetings_slot_polls WHERE meeting_id = ?", (meeting_id,)
        )
        return {int(row[0]): str(row[1]) for row in rows}

    async def by_slot_poll(self, event_id: str) -> tuple[Meeting, int] | None:
        """The meeting and slot whose availability poll is ``event_id``."""
        row = await self.db.fetchone(
            "SELECT meeting_id, slot FROM meetings_slot_polls WHERE event_id = ?", (event_id,)
        )
        if row is None:
            return None
        meeting = await self.get(int(row[0]))
        return (meeting, int(row[1])) if meeting is not None else None

    async def proposed_in(self, room_id: str) -> list[Meeting]:
        return await self._many("room_id = ? AND state = ? ORDER BY id", (room_id, PROPOSED))

    async def proposed_all(self) -> list[Meeting]:
        """Every meeting still collecting availability (to recount its poll after a start)."""
        return await self._many("state = ? ORDER BY id", (PROPOSED,))

    async def going_to(self, person: str, now: datetime) -> list[Meeting]:
        """Fixed meetings not yet ended that ``person`` said they are going to."""
        return await self._many(
            "state = ? AND (ends_at IS NULL OR ends_at > ?) AND id IN (SELECT meeting_id FROM"
            " meetings_rsvps WHERE person = ? AND status = ?) ORDER BY id",
            (FIXED, to_iso(now), person, Rsvp.GOING.value),
        )

    async def fixed_in(self, room_id: str, now: datetime) -> list[Meeting]:
        """Fixed meetings here that have not ended (ordered by first start)."""
        return await self._many(
            "room_id = ? AND state = ? AND (ends_at IS NULL OR ends_at > ?) ORDER BY start",
            (room_id, FIXED, to_iso(now)),
        )

    async def in_rooms(self, room_ids: Sequence[str], now: datetime) -> list[Meeting]:
        """Proposed, and fixed not yet ended, meetings in any of ``room_ids`` (``!meetings``
        in a DM)."""
        if not room_ids:
            return []
        marks = ", ".join("?" * len(room_ids))
        return await self._many(
            f"room_id IN ({marks}) AND (state = ? OR (state = ? AND"
            " (ends_at IS NULL OR ends_at > ?))) ORDER BY id",
            (*room_ids, PROPOSED, FIXED, to_iso(now)),
        )

    async def decisions_due(self, now: datetime) -> list[Meeting]:
        """Proposed meetings whose ``decide by`` has passed (to fix automatically)."""
        return await self._many(
            "state = ? AND decide_by IS NOT NULL AND decide_by <= ? ORDER BY decide_by",
            (PROPOSED, to_iso(now)),
        )

    async def open_decisions(self) -> list[Meeting]:
        """Every proposed meeting with a ``decide by`` (to arm its deadline at start)."""
        return await self._many(
            "state = ? AND decide_by IS NOT NULL ORDER BY decide_by", (PROPOSED,)
        )

    async def active(self, now: datetime) -> list[Meeting]:
        """Fixed meetings that have not ended: what to arm reminders for at start."""
        return await self._many(
            "state = ? AND (ends_at IS NULL OR ends_at > ?) ORDER BY id", (FIXED, to_iso(now))
        )

    async def _many(self, where: str, params: Sequence[Any] = ()) -> list[Meeting]:
        rows = await self.db.fetchall(f"SELECT * FROM meetings_meetings WHERE {where}", params)
        if not rows:
            return []
        meetings = {row["id"]: Meeting.from_row(row) for row in rows}
        ids = list(meetings)
        slots: dict[int, list[datetime]] = {i: [] for i in ids}
        cancelled: dict[int, set[datetime]] = {i: set() for i in ids}
        moved: dict[int, dict[datetime, datetime]] = {i: {} for i in ids}
        # Chunked: SQLite allows a limited number of parameters per statement.
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            marks = ", ".join("?" * len(chunk))
            for row in await self.db.fetchall(
                f"SELECT meeting_id, start FROM meetings_slots WHERE meeting_id IN ({marks})"
                " ORDER BY meeting_id, number",
                chunk,
            ):
                slots[row[0]].append(from_iso(row[1]))
            for row in await self.db.fetchall(
                "SELECT meeting_id, original, new_start FROM meetings_exceptions"
                f" WHERE meeting_id IN ({marks})",
                chunk,
            ):
                if row[2] is None:
                    cancelled[row[0]].add(from_iso(row[1]))
                else:
                    moved[row[0]][from_iso(row[1])] = from_iso(row[2])
        return [
            replace(m, slots=tuple(slots[i]), cancelled=frozenset(cancelled[i]), moved=moved[i])
            for i, m in meetings.items()
        ]

    async def set_events(self, meeting_id: int, **event_ids: str | None) -> None:
        """Remember the Matrix events of a meeting: ``thread_root``, ``table_event_id``,
        ``poll_event_id``, ``announce_event_id`` (only those given)."""
        unknown = set(event_ids) - set(_EVENT_COLUMNS)
        if unknown:
            raise ValueError(f"unknown event columns {sorted(unknown)}")
        if not event_ids:
            return
        assignments = ", ".join(f"{column} = ?" for column in event_ids)
        await self.db.execute(
            f"UPDATE meetings_meetings SET {assignments} WHERE id = ?",
            (*event_ids.values(), meeting_id),
        )

    async def fix(self, meeting_id: int, slot: int, by: str, now: datetime) -> bool:
        """proposed → fixed at slot ``slot``, once: True for the caller that gets to announce."""
        async with self.db.transaction():
            changed = await self.db.execute_rowcount(
                "UPDATE meetings_meetings SET state = ?, fixed_slot = ?, fixed_by = ?,"
                " changed_at = ?, start = (SELECT start FROM meetings_slots"
                " WHERE meeting_id = ? AND number = ?)"
                " WHERE id = ? AND state = ? AND EXISTS (SELECT 1 FROM meetings_slots"
                " WHERE meeting_id = ? AND number = ?)",
                (FIXED, slot, by, to_iso(now), meeting_id, slot, meeting_id, PROPOSED,
                 meeting_id, slot),
            )  # fmt: skip
            if changed:
                await self._update_ends(meeting_id)
        return changed > 0

    async def move(self, meeting_id: int, new_start: datetime, now: datetime) -> int:
        """Move a fixed one-off meeting; returns the new SEQUENCE for its .ics. A repeating
        meeting is changed one occurrence at a time (:meth:`move_occurrence`): moving its
        DTSTART off the rule's weekday would leave calendars disagreeing about the series."""
        async with self.db.transaction():
            recurring = await self.db.fetchval(
                "SELECT recurrence IS NOT NULL FROM meetings_meetings WHERE id = ?", (meeting_id,)
            )
            if recurring:
                raise ValueError(f"M-{meeting_id} repeats: move single occurrences instead")
            return await self._change(meeting_id, now, "start = ?", (to_iso(new_start),))

    async def cancel(self, meeting_id: int, now: datetime) -> bool:
        """Call off the whole meeting (proposed or fixed), once: True for the caller that gets
        to announce. The SEQUENCE grows, for the METHOD:CANCEL file."""
        changed = await self.db.execute_rowcount(
            "UPDATE meetings_meetings SET state = ?, sequence = sequence + 1, changed_at = ?"
            " WHERE id = ? AND state != ?",
            (CANCELLED, to_iso(now), meeting_id, CANCELLED),
        )
        return changed > 0

    async def cancel_occurrence(self, meeting_id: int, original: datetime, now: datetime) -> int:
        """Cancel one occurrence (EXDATE); returns the new SEQUENCE."""
        return await self._exception(meeting_id, original, None, now)

    async def move_occurrence(
        self, meeting_id: int, original: datetime, new_start: datetime, now: datetime
    ) -> int:
        """Move one occurrence (RECURRENCE-ID); returns the new SEQUENCE."""
        return await self._exception(meeting_id, original, new_start, now)

    async def _exception(
        self, meeting_id: int, original: datetime, new_start: datetime | None, now: datetime
    ) -> int:
        async with self.db.transaction():
            await self.db.execute(
                "INSERT INTO meetings_exceptions (meeting_id, original, new_start, changed_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(meeting_id, original) DO UPDATE SET"
                " new_start = excluded.new_start, changed_at = excluded.changed_at",
                (meeting_id, to_iso(original), to_iso(new_start) if new_start else None,
                 to_iso(now)),
            )  # fmt: skip
            return await self._change(meeting_id, now, "", ())

    async def _change(
        self, meeting_id: int, now: datetime, assignments: str, params: tuple[Any, ...]
    ) -> int:
        extra = f", {assignments}" if assignments else ""
        async with self.db.transaction():
            await self.db.execute(
                f"UPDATE meetings_meetings SET sequence = sequence + 1, changed_at = ?{extra}"
                " WHERE id = ?",
                (to_iso(now), *params, meeting_id),
            )
            await self._update_ends(meeting_id)
            return int(
                await self.db.fetchval(
                    "SELECT sequence FROM meetings_meetings WHERE id = ?", (meeting_id,)
                )
            )

    async def _update_ends(self, meeting_id: int) -> None:
        """Keep ``ends_at`` (when the last occurrence ends; NULL for an endless rule) so that
        queries for meetings still to come need no recurrence maths in SQL."""
        meeting = await self.get(meeting_id)
        schedule = meeting.schedule() if meeting else None
        if schedule is None:
            return
        ends = schedule.last_end
        await self.db.execute(
            "UPDATE meetings_meetings SET ends_at = ? WHERE id = ?",
            (to_iso(ends) if ends else None, meeting_id),
        )

    # -- availability --------------------------------------------------------------------------
    async def record_ballot(
        self, meeting_id: int, person: str, ballot: Mapping[int, Answer], ts: int, via: str
    ) -> bool:
        """Store ``person``'s ballot (``via`` is "command" or "poll"), slot by slot, unless a
        later one (by ``ts``, ms) is already stored: an old poll response replayed after a gap
        never overwrites a newer answer. True when anything changed."""
        if not ballot:
            return False
        rows = [(meeting_id, person, n, a.value, ts, via) for n, a in sorted(ballot.items())]
        values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(rows))
        changed = await self.db.execute_rowcount(
            "INSERT INTO meetings_availability (meeting_id, person, slot, answer, ts, via)"
            f" VALUES {values} ON CONFLICT(meeting_id, person, slot) DO UPDATE SET"
            " answer = excluded.answer, ts = excluded.ts, via = excluded.via"
            " WHERE excluded.ts >= meetings_availability.ts",
            [value for row in rows for value in row],
        )
        return changed > 0

    async def ballots(self, meeting_id: int) -> dict[str, Ballot]:
        """Everyone's latest ballot: person → slot number → answer."""
        # One row per person, not per slot: the table is rebuilt on every answer, and 300
        # rows decode several times faster than 6,000.
        rows = await self.db.fetchall(
            "SELECT person, group_concat(slot || ':' || answer) FROM meetings_availability"
            " WHERE meeting_id = ? GROUP BY person",
            (meeting_id,),
        )
        answers = {a.value: a for a in Answer}
        ballots: dict[str, Ballot] = {}
        for person, packed in rows:
            ballot: Ballot = {}
            for item in packed.split(","):
                slot, _, answer = item.partition(":")
                ballot[int(slot)] = answers[answer]
            ballots[person] = ballot
        return ballots

    # -- RSVPs ---------------------------------------------------------------------------------
    async def set_rsvp(self, meeting_id: int, person: str, status: Rsvp, ts: int) -> bool:
        """Latest answer per person wins (by ``ts``); True when stored."""
        changed = await self.db.execute_rowcount(
            "INSERT INTO meetings_rsvps (meeting_id, person, status, ts) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(meeting_id, person) DO UPDATE SET status = excluded.status,"
            " ts = excluded.ts WHERE excluded.ts >= meetings_rsvps.ts",
            (meeting_id, person, status.value, ts),
        )
        return changed > 0

    async def rsvps(self, meeting_id: int) -> dict[str, Rsvp]:
        rows = await self.db.fetchall(
            "SELECT person, status FROM meetings_rsvps WHERE meeting_id = ?", (meeting_id,)
        )
        return {row[0]: Rsvp(row[1]) for row in rows}

    async def going(self, meeting_id: int) -> list[str]:
        """People who answered "going" and are not forgotten (to DM reminders to)."""
        rows = await self.db.fetchall(
            "SELECT person FROM meetings_rsvps WHERE meeting_id = ? AND status = ?"
            " AND person NOT LIKE ? ORDER BY person",
            (meeting_id, Rsvp.GOING.value, ANONYMOUS + "%"),
        )
        return [row[0] for row in rows]
