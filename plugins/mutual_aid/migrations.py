"""The ``mutual_aid_`` tables' migrations: ordered, each applied once in its own transaction, never
edited once released (a change is a new migration at the end)."""

from __future__ import annotations

from civicbot_plugins.mutual_aid.models import KINDS

from civicbot.api import Database, Migration

_SCHEMA = """
CREATE TABLE mutual_aid_sequences (kind TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE mutual_aid_posts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    number INTEGER NOT NULL,
    room_id TEXT NOT NULL,
    source_key TEXT NOT NULL UNIQUE,
    poster TEXT,
    private INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL,
    terms TEXT NOT NULL,
    category TEXT NOT NULL DEFAULT '',
    urgency TEXT NOT NULL,
    urgency_rank INTEGER NOT NULL,
    area TEXT NOT NULL DEFAULT '',
    ongoing INTEGER NOT NULL DEFAULT 0,
    notify INTEGER NOT NULL DEFAULT 1,
    thanks INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'open',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    reminded INTEGER NOT NULL DEFAULT 0,
    event_id TEXT,
    times_matched INTEGER NOT NULL DEFAULT 0,
    UNIQUE (kind, number)
);
CREATE INDEX mutual_aid_posts_list
    ON mutual_aid_posts(room_id, kind, state, urgency_rank, id DESC);
CREATE INDEX mutual_aid_posts_poster ON mutual_aid_posts(poster);
CREATE INDEX mutual_aid_posts_private ON mutual_aid_posts(state) WHERE private = 1;
CREATE INDEX mutual_aid_posts_expiry ON mutual_aid_posts(expires_at) WHERE state = 'open';
CREATE TABLE mutual_aid_requesters (
    post_id INTEGER PRIMARY KEY REFERENCES mutual_aid_posts(id) ON DELETE CASCADE,
    sealed BLOB NOT NULL
);
CREATE TABLE mutual_aid_matches (
    id INTEGER PRIMARY KEY,
    post_id INTEGER NOT NULL REFERENCES mutual_aid_posts(id) ON DELETE CASCADE,
    helper TEXT,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    intro_room_id TEXT
);
CREATE INDEX mutual_aid_matches_post ON mutual_aid_matches(post_id, state);
CREATE INDEX mutual_aid_matches_helper ON mutual_aid_matches(helper);
CREATE TABLE mutual_aid_hours (
    id INTEGER PRIMARY KEY,
    room_id TEXT NOT NULL,
    post_id INTEGER REFERENCES mutual_aid_posts(id) ON DELETE SET NULL,
    giver TEXT,
    receiver TEXT,
    receiver_sealed BLOB,
    minutes INTEGER NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX mutual_aid_hours_giver ON mutual_aid_hours(giver);
CREATE INDEX mutual_aid_hours_receiver ON mutual_aid_hours(receiver);
CREATE TABLE mutual_aid_reports (
    id INTEGER PRIMARY KEY,
    post_id INTEGER REFERENCES mutual_aid_posts(id) ON DELETE SET NULL,
    room_id TEXT NOT NULL,
    reporter TEXT,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE mutual_aid_notify_counts (
    user_id TEXT NOT NULL,
    day TEXT NOT NULL,
    sent INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)
) WITHOUT ROWID;
CREATE VIRTUAL TABLE mutual_aid_fts USING fts5(
    body, terms, category,
    content='mutual_aid_posts', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
)
"""


# One statement each (they contain semicolons, which the script splitter would cut).
_TRIGGERS = (
    """CREATE TRIGGER mutual_aid_fts_insert AFTER INSERT ON mutual_aid_posts
    WHEN new.state = 'open' BEGIN
        INSERT INTO mutual_aid_fts (rowid, body, terms, category)
        VALUES (new.id, new.body, new.terms, new.category);
    END""",
    """CREATE TRIGGER mutual_aid_fts_delete AFTER DELETE ON mutual_aid_posts
    WHEN old.state = 'open' BEGIN
        INSERT INTO mutual_aid_fts (mutual_aid_fts, rowid, body, terms, category)
        VALUES ('delete', old.id, old.body, old.terms, old.category);
    END""",
    # One trigger for updates, so the old entry is always taken out before the new one goes in
    # (SQLite does not promise an order between two triggers on the same event).
    """CREATE TRIGGER mutual_aid_fts_update AFTER UPDATE ON mutual_aid_posts
    WHEN new.state != old.state OR new.body != old.body OR new.terms != old.terms
        OR new.category != old.category BEGIN
        INSERT INTO mutual_aid_fts (mutual_aid_fts, rowid, body, terms, category)
        SELECT 'delete', old.id, old.body, old.terms, old.category WHERE old.state = 'open';
        INSERT INTO mutual_aid_fts (rowid, body, terms, category)
        SELECT new.id, new.body, new.terms, new.category WHERE new.state = 'open';
    END""",
)


async def _create(db: Database) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            await db.execute(statement)
    for trigger in _TRIGGERS:
        await db.execute(trigger)


# The rooms where mutual aid is in use (see :mod:`rooms`).
ROOMS_MIGRATION = """
CREATE TABLE mutual_aid_rooms (room_id TEXT PRIMARY KEY, seen_at TEXT NOT NULL)
"""


_KIND_TRIGGERS = (
    """CREATE TRIGGER mutual_aid_fts_{kind}_insert AFTER INSERT ON mutual_aid_posts
    WHEN new.state = 'open' AND new.kind = '{kind}' BEGIN
        INSERT INTO mutual_aid_fts_{kind} (rowid, body, terms, category)
        VALUES (new.id, new.body, new.terms, new.category);
    END""",
    """CREATE TRIGGER mutual_aid_fts_{kind}_delete AFTER DELETE ON mutual_aid_posts
    WHEN old.state = 'open' AND old.kind = '{kind}' BEGIN
        INSERT INTO mutual_aid_fts_{kind} (mutual_aid_fts_{kind}, rowid, body, terms, category)
        VALUES ('delete', old.id, old.body, old.terms, old.category);
    END""",
    """CREATE TRIGGER mutual_aid_fts_{kind}_update AFTER UPDATE ON mutual_aid_posts
    WHEN new.kind = '{kind}' AND (new.state != old.state OR new.body != old.body
        OR new.terms != old.terms OR new.category != old.category) BEGIN
        INSERT INTO mutual_aid_fts_{kind} (mutual_aid_fts_{kind}, rowid, body, terms, category)
        SELECT 'delete', old.id, old.body, old.terms, old.category WHERE old.state = 'open';
        INSERT INTO mutual_aid_fts_{kind} (rowid, body, terms, category)
        SELECT new.id, new.body, new.terms, new.category WHERE new.state = 'open';
    END""",
)


async def _split_index(db: Database) -> None:
    """One index per kind instead of one for both. Matching a new need searches only the
    offers' index: BM25 is scored over offers alone (no needs to skip), the posts table is read
    only for the few best hits instead of every hit (kind and room were in the table, not the
    index), and a new need is written into the small needs index, whose merges stay small.
    (Indexing the room as well was tried: an AND with a term every post has made matching
    several times slower, see ``bench/README.md``.)"""
    for name in ("insert", "delete", "update"):
        await db.execute(f"DROP TRIGGER IF EXISTS mutual_aid_fts_{name}")
    await db.execute("DROP TABLE IF EXISTS mutual_aid_fts")
    for kind in KINDS:
        await db.execute(
            f"CREATE VIRTUAL TABLE mutual_aid_fts_{kind} USING fts5("
            "body, terms, category,"
            " content='mutual_aid_posts', content_rowid='id',"
            " tokenize='porter unicode61 remove_diacritics 2')"
        )
        for trigger in _KIND_TRIGGERS:
            await db.execute(trigger.format(kind=kind))
        await db.execute(
            f"INSERT INTO mutual_aid_fts_{kind} (rowid, body, terms, category)"
            " SELECT id, body, terms, category FROM mutual_aid_posts"
            " WHERE state = 'open' AND kind = ?",
            (kind,),
        )


# The command that made a post's latest change, as a keyed hash (a private need's requester
# types it in their DM): the same command replayed after a crash is known and finished, not
# refused because the change is already made.
CHANGED_BY = "ALTER TABLE mutual_aid_posts ADD COLUMN changed_by TEXT"

MIGRATIONS: list[Migration] = [_create, ROOMS_MIGRATION, _split_index, CHANGED_BY]
