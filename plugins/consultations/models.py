"""What the consultations plugin keeps in the main database: its migrations, and the rows as
dataclasses (SQL is in :mod:`store`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from civicbot_plugins.consultations.service import UPDATED

FORGOTTEN = "forgotten:"  # the stand-in a forgotten person's answers keep, so totals stay

MIGRATIONS = [
    """
    CREATE TABLE consultations_consultations (
        id INTEGER PRIMARY KEY,
        source_event TEXT NOT NULL UNIQUE,      -- a replayed !consult cannot store it twice
        room_id TEXT NOT NULL,
        author TEXT NOT NULL,                   -- the councillor
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        visibility TEXT NOT NULL,
        moderated INTEGER NOT NULL,
        closes_at INTEGER NOT NULL,             -- UTC seconds
        state TEXT NOT NULL,                    -- open, closed, responded, updated
        status TEXT NOT NULL DEFAULT '',        -- of the last update: in progress, done, ...
        salt TEXT NOT NULL,
        root_event TEXT,                        -- the thread root, once posted
        created_at INTEGER NOT NULL,
        closed_at INTEGER,
        responded_at INTEGER,
        overdue_noticed_at INTEGER,             -- the accountability notice went out
        summary_posted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX consultations_by_room ON consultations_consultations(room_id, state);
    CREATE TABLE consultations_questions (
        consultation_id INTEGER NOT NULL,
        number INTEGER NOT NULL,
        kind TEXT NOT NULL,
        prompt TEXT NOT NULL,
        options TEXT NOT NULL,                  -- JSON list
        proposer TEXT,                          -- who proposed a statement from a resident
        PRIMARY KEY (consultation_id, number)
    );
    CREATE TABLE consultations_pending (
        id INTEGER PRIMARY KEY,
        consultation_id INTEGER NOT NULL,
        source_event TEXT NOT NULL UNIQUE,
        text TEXT NOT NULL,
        proposer TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'waiting'   -- waiting, approved, rejected
    );
    CREATE TABLE consultations_answers (
        consultation_id INTEGER NOT NULL,
        respondent TEXT NOT NULL,
        number INTEGER NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (consultation_id, respondent, number)
    );
    CREATE TABLE consultations_respondents (
        consultation_id INTEGER NOT NULL,
        respondent TEXT NOT NULL,
        follow INTEGER NOT NULL DEFAULT 0,      -- wants the response by DM
        answered_at INTEGER NOT NULL,
        PRIMARY KEY (consultation_id, respondent)
    );
    CREATE TABLE consultations_updates (
        id INTEGER PRIMARY KEY,
        consultation_id INTEGER NOT NULL,
        source_event TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,                     -- response or update
        status TEXT NOT NULL,
        text TEXT NOT NULL,
        author TEXT NOT NULL,
        posted_at INTEGER NOT NULL
    );
    CREATE TABLE consultations_walks (
        user_id TEXT PRIMARY KEY,               -- one walk-through at a time per person
        consultation_id INTEGER NOT NULL,
        room_id TEXT NOT NULL,                  -- their DM with the bot
        step INTEGER NOT NULL                   -- the question asked, or 0: asking to follow
    )
    """,
    # The counts threshold, fixed when the consultation opens: lowering the room's setting
    # after people answered must not show one person's answers (it can only be raised).
    """
    ALTER TABLE consultations_consultations ADD COLUMN counts_minimum INTEGER NOT NULL DEFAULT 0
    """,
]


@dataclass
class Consultation:
    id: int
    room_id: str
    author: str
    title: str
    description: str
    visibility: str
    moderated: bool
    closes_at: int
    state: str
    status: str
    salt: str
    root_event: str | None
    created_at: int
    closed_at: int | None
    responded_at: int | None
    overdue_noticed_at: int | None
    summary_posted: bool
    counts_minimum: int = 0  # fixed when it opened

    def threshold(self, configured: int) -> int:
        """The counts threshold protecting its respondents: as it was when it opened, or
        higher if the room has raised it since (never lower)."""
        return max(self.counts_minimum, configured)

    @property
    def label(self) -> str:
        return f"C-{self.id}"

    @property
    def state_text(self) -> str:
        return f"updated: {self.status}" if self.state == UPDATED and self.status else self.state


@dataclass
class Update:
    kind: str
    status: str
    text: str
    author: str
    posted_at: int


COLUMNS = (
    "id, room_id, author, title, description, visibility, moderated, closes_at, state, status, "
    "salt, root_event, created_at, closed_at, responded_at, overdue_noticed_at, summary_posted, "
    "counts_minimum"
)


def consultation_of(row: Any) -> Consultation:
    values = list(row)
    values[6] = bool(values[6])
    values[-2] = bool(values[-2])
    return Consultation(*values)
