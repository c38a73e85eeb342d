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

from civicbot.api import Database, Migration

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

# One full-text index per kind (see :func:`_split_index`), kept by triggers like the first one.
KINDS = ("need", "offer")
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


MIGRATIONS: list[Migration] = [_create, ROOMS_MIGRATION, _split_index]


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
