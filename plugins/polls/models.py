"""The polls tables and the dataclasses they hold.

Secret ballots are stored so that no table links a voter to a choice:
``polls_secret_voters`` says who has voted (to refuse a second ballot) and holds no choice;
``polls_secret_ballots`` holds the choices under random keys and holds no voter;
``polls_secret_receipts`` holds a salted hash of each ballot's ``!vote`` event, so a replayed
event is recognised, and holds neither. None has a timestamp or a rowid, and the order of arrival
(which would pair the n-th voter with the n-th ballot) is not kept on disk either: see
:mod:`secret`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from civicbot_plugins.polls.service import Option, PollKind

if TYPE_CHECKING:
    from civicbot_plugins.polls.parsing import PollSpec

    from civicbot.api import Context


OPEN, POSTING, CLOSING, CLOSED = "open", "posting", "closing", "closed"
CANCELLED = "cancelled"  # by "!poll cancel": no result, ever (closed_at/closed_by say when, who)
ANONYMOUS = "anon:"  # the prefix of a forgotten voter's stand-in while their poll is open


def to_iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    # fromisoformat reads the "…Z" that to_iso writes, a tenth of strptime's cost: listing a
    # year of decisions reads thousands of these.
    return datetime.fromisoformat(text).astimezone(UTC)


def anonymous_voter(salt: str, user_id: str) -> str:
    """What a forgotten voter becomes in an open poll: stable within the poll (so their latest
    vote still replaces the earlier one) but not their name."""
    return ANONYMOUS + hashlib.blake2s(f"{salt}:{user_id}".encode(), digest_size=8).hexdigest()


def is_anonymous(voter: str) -> bool:
    return voter.startswith(ANONYMOUS)


@dataclass
class Poll:
    id: int
    room_id: str
    source_event_id: str
    creator: str
    question: str
    kind: PollKind
    max_selections: int
    options: list[Option]
    secret: bool
    hidden: bool
    # The room's zone when the poll was made, for the record only: times are shown in the zone
    # of the room as it is now (issue: a changed room zone must change every poll's times).
    timezone: str
    salt: str
    created_at: datetime
    closes_at: datetime
    state: str
    start_event_id: str | None = None
    text_event_id: str | None = None
    thread_root: str | None = None  # the thread the poll was asked in, if any
    closed_at: datetime | None = None
    closed_by: str | None = None
    cutoff_ts: int | None = None
    end_event_id: str | None = None
    results_event_id: str | None = None
    result: dict[str, Any] | None = None
    reminder_sent: bool = False
    outcome: str | None = None
    outcome_by: str | None = None
    outcome_at: datetime | None = None
    review_at: datetime | None = None
    review_sent: bool = False
    close_event_id: str | None = None  # the "!poll close" or "!poll cancel", to spot a replay
    edits: int = 0
    edit_event_id: str | None = None
    min_secret_voters: int = 0  # fixed when the poll opened

    def secret_threshold(self, configured: int) -> int:
        """The threshold that protects this poll's voters: as it was when the poll opened,
        or higher if the room has raised it since (never lower)."""
        return max(self.min_secret_voters, configured)

    @property
    def label(self) -> str:
        return f"P-{self.id}"

    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    @property
    def is_closed(self) -> bool:
        return self.state == CLOSED

    @property
    def is_cancelled(self) -> bool:
        return self.state == CANCELLED

    @property
    def ballot_length(self) -> int:
        return len(self.options) if self.kind is PollKind.RANKED else self.max_selections

    @property
    def option_ids(self) -> list[str]:
        return [option.id for option in self.options]

    @property
    def discussion_root(self) -> str | None:
        """Where follow-ups (outcomes, reviews) go: the poll's thread."""
        return self.thread_root or self.text_event_id

    @classmethod
    def from_row(cls, row: Any) -> Poll:
        return cls(
            id=row["id"],
            room_id=row["room_id"],
            source_event_id=row["source_event_id"],
            creator=row["creator"],
            question=row["question"],
            kind=PollKind(row["kind"]),
            max_selections=row["max_selections"],
            options=[Option(o["id"], o["text"]) for o in json.loads(row["options"])],
            secret=bool(row["secret"]),
            hidden=bool(row["hidden"]),
            timezone=row["timezone"],
            salt=row["salt"],
            created_at=from_iso(row["created_at"]),  # type: ignore[arg-type]
            closes_at=from_iso(row["closes_at"]),  # type: ignore[arg-type]
            state=row["state"],
            start_event_id=row["start_event_id"],
            text_event_id=row["text_event_id"],
            thread_root=row["thread_root"],
            closed_at=from_iso(row["closed_at"]),
            closed_by=row["closed_by"],
            cutoff_ts=row["cutoff_ts"],
            end_event_id=row["end_event_id"],
            results_event_id=row["results_event_id"],
            result=json.loads(row["result"]) if row["result"] else None,
            reminder_sent=bool(row["reminder_sent"]),
            outcome=row["outcome"],
            outcome_by=row["outcome_by"],
            outcome_at=from_iso(row["outcome_at"]),
            review_at=from_iso(row["review_at"]),
            review_sent=bool(row["review_sent"]),
            close_event_id=row["close_event_id"],
            edits=row["edits"],
            edit_event_id=row["edit_event_id"],
            min_secret_voters=row["min_secret_voters"],
        )


@dataclass
class NewPoll:
    room_id: str
    source_event_id: str
    creator: str
    question: str
    kind: PollKind
    max_selections: int
    options: list[Option]
    secret: bool
    hidden: bool
    timezone: str
    created_at: datetime
    closes_at: datetime
    thread_root: str | None
    min_secret_voters: int = 0

    @classmethod
    def typed(
        cls,
        ctx: Context,
        spec: PollSpec,
        zone: str,
        closes: datetime | None,
        options: list[Option],
    ) -> NewPoll:
        """The poll ``spec`` describes, asked by ``ctx``'s event (closing ``closes``, or now
        until the caller sets the default)."""
        return cls(
            room_id=ctx.room_id,
            source_event_id=ctx.event.event_id,
            creator=ctx.sender,
            question=spec.question,
            kind=spec.kind,
            max_selections=spec.max_selections,
            options=options,
            secret=spec.secret,
            hidden=spec.hidden,
            timezone=zone,
            created_at=ctx.now,
            closes_at=closes or ctx.now,
            thread_root=ctx.event.thread_root,
        )
