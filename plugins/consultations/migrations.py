"""The ``consultations_`` tables' migrations: ordered, each applied once in its own transaction,
never edited once released (a change is a new migration at the end)."""

from __future__ import annotations

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
    # The privacy threshold of a consultation's counts, fixed when it opens (raised later,
    # never lowered after people answered).
    """
    ALTER TABLE consultations_consultations ADD COLUMN counts_minimum INTEGER NOT NULL DEFAULT 0
    """,
    # The `!consult close` that closed it: the same command replayed after a crash is told what
    # its first run said, not "closed already".
    """
    ALTER TABLE consultations_consultations ADD COLUMN close_event TEXT
    """,
]
