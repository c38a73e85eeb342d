"""The mutual_aid tables and the dataclasses they hold. See :mod:`store` for the privacy design.

Posts (needs and offers) live in one table; a need and an offer are numbered separately and
across all rooms (``N-42``, ``O-7``), so an id typed in a DM with the bot needs no room. The
full-text index ``mutual_aid_fts`` (FTS5, porter stemming) holds the open posts only: triggers
add a post when it becomes open and take it out when it stops being open, so the index never
drifts from the table and stays as small as what can still be matched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# post states
OPEN, MATCHED, DONE, WITHDRAWN, EXPIRED, REMOVED = (
    "open",
    "matched",
    "done",
    "withdrawn",
    "expired",
    "removed",
)
CLOSED_STATES = frozenset({DONE, WITHDRAWN, EXPIRED, REMOVED})
# match states: a helper said ``!can``; the requester accepts or declines; either backs out
OFFERED, ACCEPTED, DECLINED, BACKED_OUT, COMPLETED, SUPERSEDED = (
    "offered",
    "accepted",
    "declined",
    "backed_out",
    "completed",
    "superseded",
)
LIVE_MATCH_STATES = (OFFERED, ACCEPTED)  # a tuple: its order is the SQL parameters' order


# One full-text index per kind (see :func:`_split_index`), kept by triggers like the first one.
KINDS = ("need", "offer")


def to_iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Post:
    """A need or an offer. ``poster`` is None for a private need: who asked is sealed away
    (see :mod:`store`), and nothing that lists posts can show it."""

    id: int
    kind: str
    number: int
    room_id: str
    poster: str | None
    private: bool
    body: str
    category: str
    urgency: str
    area: str
    ongoing: bool
    notify: bool
    thanks: bool
    state: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    reminded: bool
    event_id: str | None
    times_matched: int
    changed_by: str | None = None  # keyed hash of the command that made the latest change

    @property
    def short_id(self) -> str:
        return f"{'N' if self.kind == 'need' else 'O'}-{self.number}"

    @classmethod
    def from_row(cls, row: Any) -> Post:
        return cls(
            id=row["id"],
            kind=row["kind"],
            number=row["number"],
            room_id=row["room_id"],
            poster=row["poster"],
            private=bool(row["private"]),
            body=row["body"],
            category=row["category"],
            urgency=row["urgency"],
            area=row["area"],
            ongoing=bool(row["ongoing"]),
            notify=bool(row["notify"]),
            thanks=bool(row["thanks"]),
            state=row["state"],
            created_at=from_iso(row["created_at"]),
            updated_at=from_iso(row["updated_at"]),
            expires_at=from_iso(row["expires_at"]),
            reminded=bool(row["reminded"]),
            event_id=row["event_id"],
            times_matched=row["times_matched"],
            # (absent from a database not migrated yet, read while migrating)
            changed_by=row["changed_by"] if "changed_by" in row.keys() else None,
        )


@dataclass(frozen=True)
class Match:
    """One helper's ``!can`` on a need (or a requester taking a one-off offer), and where it went.
    ``helper`` is None once the helper asked to be forgotten."""

    id: int
    post_id: int
    helper: str | None
    state: str
    created_at: datetime
    updated_at: datetime
    intro_room_id: str | None

    @classmethod
    def from_row(cls, row: Any) -> Match:
        return cls(
            id=row["id"],
            post_id=row["post_id"],
            helper=row["helper"],
            state=row["state"],
            created_at=from_iso(row["created_at"]),
            updated_at=from_iso(row["updated_at"]),
            intro_room_id=row["intro_room_id"],
        )


@dataclass(frozen=True)
class Report:
    id: int
    post_id: int | None
    room_id: str
    reporter: str | None
    reason: str
    at: datetime


@dataclass(frozen=True)
class Balance:
    """A person's timebank hours, in minutes."""

    given: int
    received: int

    @property
    def net(self) -> int:
        return self.given - self.received


@dataclass(frozen=True)
class Candidate:
    """A post found by matching or search, with its relevance (higher is better)."""

    post: Post
    score: float
