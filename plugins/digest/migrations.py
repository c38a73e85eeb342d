"""The ``digest_`` tables' migrations: ordered, each applied once in its own transaction, never
edited once released (a change is a new migration at the end)."""

from __future__ import annotations

# Ordered; each runs once, in its own transaction.
MIGRATIONS = [
    """
    CREATE TABLE digest_activity (
        room_id TEXT NOT NULL,
        hour INTEGER NOT NULL,              -- UTC seconds at the start of the hour
        messages INTEGER NOT NULL,
        PRIMARY KEY (room_id, hour)
    ) WITHOUT ROWID;
    CREATE TABLE digest_threads (
        room_id TEXT NOT NULL,
        hour INTEGER NOT NULL,
        root TEXT NOT NULL,                 -- the thread's root event
        replies INTEGER NOT NULL,
        PRIMARY KEY (room_id, hour, root)
    ) WITHOUT ROWID;
    CREATE TABLE digest_members (
        room_id TEXT NOT NULL,
        member TEXT NOT NULL,               -- keyed hash of the Matrix id, never the id
        joined_at INTEGER NOT NULL,         -- first join seen, UTC seconds
        PRIMARY KEY (room_id, member)
    ) WITHOUT ROWID;
    CREATE INDEX digest_members_joined ON digest_members(room_id, joined_at);
    -- One row per room and week, written *before* the digest is sent: a start after a crash
    -- finds the claim and re-sends with the same transaction id (the homeserver drops a copy).
    CREATE TABLE digest_posts (
        room_id TEXT NOT NULL,
        week TEXT NOT NULL,                 -- ISO week of the slot in the room's zone
        due_at INTEGER NOT NULL,
        claimed_at INTEGER NOT NULL,
        late INTEGER NOT NULL DEFAULT 0,
        event_id TEXT,                      -- NULL until the homeserver took it
        PRIMARY KEY (room_id, week)
    );
    CREATE TABLE digest_subscribers (
        user_id TEXT PRIMARY KEY,
        since INTEGER NOT NULL
    );
    CREATE TABLE digest_personal (
        user_id TEXT NOT NULL,
        week TEXT NOT NULL,
        claimed_at INTEGER NOT NULL,
        event_id TEXT,
        PRIMARY KEY (user_id, week)
    );
    CREATE TABLE digest_state (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )
    """,
]
