"""The ``polls_`` tables' migrations: ordered, each applied once in its own transaction, never
edited once released (a change is a new migration at the end)."""

from __future__ import annotations

from civicbot.api import Migration

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE polls_polls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        room_id TEXT NOT NULL,
        source_event_id TEXT NOT NULL UNIQUE,
        creator TEXT NOT NULL,
        question TEXT NOT NULL,
        kind TEXT NOT NULL,
        max_selections INTEGER NOT NULL,
        options TEXT NOT NULL,
        secret INTEGER NOT NULL DEFAULT 0,
        hidden INTEGER NOT NULL DEFAULT 0,
        timezone TEXT NOT NULL,
        salt TEXT NOT NULL,
        created_at TEXT NOT NULL,
        closes_at TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'posting',
        start_event_id TEXT,
        text_event_id TEXT,
        thread_root TEXT,
        closed_at TEXT,
        closed_by TEXT,
        cutoff_ts INTEGER,
        end_event_id TEXT,
        results_event_id TEXT,
        result TEXT,
        reminder_sent INTEGER NOT NULL DEFAULT 0,
        outcome TEXT,
        outcome_by TEXT,
        outcome_at TEXT,
        review_at TEXT,
        review_sent INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX polls_polls_room ON polls_polls(room_id, state);
    CREATE INDEX polls_polls_start ON polls_polls(start_event_id);
    CREATE TABLE polls_responses (
        event_id TEXT PRIMARY KEY,
        poll_id INTEGER NOT NULL REFERENCES polls_polls(id),
        voter TEXT NOT NULL,
        answers TEXT NOT NULL,
        ts INTEGER NOT NULL,
        via TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX polls_responses_poll ON polls_responses(poll_id);
    CREATE INDEX polls_responses_voter ON polls_responses(voter);
    CREATE TABLE polls_secret_voters (
        poll_id INTEGER NOT NULL REFERENCES polls_polls(id),
        voter TEXT NOT NULL,
        PRIMARY KEY (poll_id, voter)
    ) WITHOUT ROWID;
    CREATE TABLE polls_secret_ballots (
        ballot_key TEXT PRIMARY KEY,
        poll_id INTEGER NOT NULL REFERENCES polls_polls(id),
        answers TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID;
    CREATE TABLE polls_forgotten (
        poll_id INTEGER NOT NULL REFERENCES polls_polls(id),
        voter_hash TEXT NOT NULL,
        PRIMARY KEY (poll_id, voter_hash)
    ) WITHOUT ROWID
    """,
    """
    ALTER TABLE polls_polls ADD COLUMN close_event_id TEXT;
    CREATE TABLE polls_secret_receipts (
        poll_id INTEGER NOT NULL REFERENCES polls_polls(id),
        receipt TEXT NOT NULL,
        PRIMARY KEY (poll_id, receipt)
    ) WITHOUT ROWID
    """,
    # "!poll edit": how often a poll was changed (its answer ids carry the number, so a vote
    # from a client still showing the old version is spoiled, not read as the wrong option),
    # and the command that made the last change, to recognise its replay after a crash.
    """
    ALTER TABLE polls_polls ADD COLUMN edits INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE polls_polls ADD COLUMN edit_event_id TEXT
    """,
    # A secret poll's privacy threshold, fixed when it opens (a room's setting may raise it
    # later, never lower it after people voted).
    """
    ALTER TABLE polls_polls ADD COLUMN min_secret_voters INTEGER NOT NULL DEFAULT 0
    """,
]
