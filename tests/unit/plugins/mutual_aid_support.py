"""Shared set-up for the mutual_aid unit tests: a real on-disk database with the plugin's
migrations, a real sealer and keyed hash (with a test key)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from civicbot_plugins.mutual_aid.ledger import AidLedger
from civicbot_plugins.mutual_aid.migrations import MIGRATIONS
from civicbot_plugins.mutual_aid.parsing import parse_post
from civicbot_plugins.mutual_aid.sealing import Sealer
from civicbot_plugins.mutual_aid.store import AidStore

from civicbot.storage.database import Database

KEY = b"k" * 32
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ROOM = "!street:example.org"


def keyed_hash(text: str) -> str:
    return hmac.new(KEY, text.encode(), hashlib.sha256).hexdigest()


async def open_store(path) -> tuple[Database, AidStore, AidLedger]:
    db = await Database.open(path)
    await db.migrate("mutual_aid", MIGRATIONS)
    store = AidStore(db, Sealer(KEY), keyed_hash)
    return db, store, AidLedger(store)


@pytest.fixture
async def aid(tmp_path):
    """(db, store, ledger) on a fresh file, closed afterwards even when the test fails (an open
    aiosqlite connection would keep pytest from exiting)."""
    db, store, ledger = await open_store(tmp_path / "aid.sqlite3")
    try:
        yield db, store, ledger
    finally:
        await db.close()


_counter = iter(range(1, 10**9))


async def post(store, kind, text, author="@ann:example.org", *, private=False, room=ROOM, now=NOW):
    """Create a post from what a resident would type after ``!offer`` / ``!need``."""
    created, _ = await store.create(
        parse_post(kind, text),
        room_id=room,
        source_event_id=f"$event{next(_counter)}",
        author=author,
        private=private,
        now=now,
    )
    return created
