"""The ``meetings_`` tables' migrations: ordered, each applied once in its own transaction, never
edited once released (a change is a new migration at the end)."""

from __future__ import annotations

from civicbot.api import Migration

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE meetings_meetings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        room_id TEXT NOT NULL,
        source_event_id TEXT NOT NULL UNIQUE,
        organiser TEXT NOT NULL,
        title TEXT NOT NULL,
        duration_s INTEGER NOT NULL,
        timezone TEXT NOT NULL,
        location TEXT,
        url TEXT,
        decide_by TEXT,
        state TEXT NOT NULL,
        start TEXT,
        ends_at TEXT,
        fixed_slot INTEGER,
        fixed_by TEXT,
        recurrence TEXT,
        uid_token TEXT NOT NULL,
        sequence INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        changed_at TEXT NOT NULL,
        thread_root TEXT,
        table_event_id TEXT,
        poll_event_id TEXT,
        announce_event_id TEXT
    );
    CREATE INDEX meetings_meetings_room ON meetings_meetings(room_id, state);
    CREATE INDEX meetings_meetings_state ON meetings_meetings(state, decide_by);
    CREATE INDEX meetings_meetings_poll ON meetings_meetings(poll_event_id);
    CREATE TABLE meetings_slots (
        meeting_id INTEGER NOT NULL REFERENCES meetings_meetings(id),
        number INTEGER NOT NULL,
        start TEXT NOT NULL,
        PRIMARY KEY (meeting_id, number)
    ) WITHOUT ROWID;
    CREATE TABLE meetings_availability (
        meeting_id INTEGER NOT NULL REFERENCES meetings_meetings(id),
        person TEXT NOT NULL,
        slot INTEGER NOT NULL,
        answer TEXT NOT NULL,
        ts INTEGER NOT NULL,
        via TEXT NOT NULL,
        PRIMARY KEY (meeting_id, person, slot)
    ) WITHOUT ROWID;
    CREATE INDEX meetings_availability_person ON meetings_availability(person);
    CREATE TABLE meetings_rsvps (
        meeting_id INTEGER NOT NULL REFERENCES meetings_meetings(id),
        person TEXT NOT NULL,
        status TEXT NOT NULL,
        ts INTEGER NOT NULL,
        PRIMARY KEY (meeting_id, person)
    ) WITHOUT ROWID;
    CREATE INDEX meetings_rsvps_person ON meetings_rsvps(person);
    CREATE TABLE meetings_exceptions (
        meeting_id INTEGER NOT NULL REFERENCES meetings_meetings(id),
        original TEXT NOT NULL,
        new_start TEXT,
        changed_at TEXT NOT NULL,
        PRIMARY KEY (meeting_id, original)
    ) WITHOUT ROWID;
    CREATE TABLE meetings_reminders (
        key TEXT PRIMARY KEY,
        meeting_id INTEGER NOT NULL REFERENCES meetings_meetings(id),
        due_at TEXT NOT NULL,
        delivery TEXT NOT NULL,
        claimed_at TEXT NOT NULL,
        event_id TEXT
    ) WITHOUT ROWID;
    CREATE INDEX meetings_reminders_meeting ON meetings_reminders(meeting_id);
    CREATE TABLE meetings_minutes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        meeting_id INTEGER NOT NULL REFERENCES meetings_meetings(id),
        occurrence TEXT,
        author TEXT NOT NULL,
        text TEXT NOT NULL,
        posted_at TEXT NOT NULL,
        event_id TEXT
    );
    CREATE INDEX meetings_minutes_meeting ON meetings_minutes(meeting_id);
    CREATE INDEX meetings_minutes_author ON meetings_minutes(author);
    CREATE TABLE meetings_user_tz (
        person TEXT PRIMARY KEY,
        timezone TEXT NOT NULL,
        set_at TEXT NOT NULL
    );
    """,
    # One yes / if need be / no poll per candidate time: Element Web answers a multi-select
    # poll one tap at a time, each tap replacing the last, so one poll for all times could
    # only ever hold one "yes".
    """
    CREATE TABLE meetings_slot_polls (
        event_id TEXT PRIMARY KEY,
        meeting_id INTEGER NOT NULL REFERENCES meetings_meetings(id),
        slot INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX meetings_slot_polls_meeting ON meetings_slot_polls(meeting_id);
    """,
]
