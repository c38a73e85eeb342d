"""The installation secret, ``bot.data_dir/secret.key``: made once, never silently replaced.

The key is kept beside the database, never in it, so that a copy of the database alone cannot
recompute what it keys (see :meth:`civicbot.core.context.PluginContext.keyed_hash`): each poll's
salt, and through it secret-ballot receipts and the stand-ins for people who asked to be
forgotten. A new key over old data would quietly break those: a replayed secret vote would no
longer be recognised, nor would a forgotten voter's stand-in. So a key is created only for a
data directory that holds no data yet; otherwise a missing or unreadable key stops the start
with one line saying what to do.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

KEY_FILE = "secret.key"
DATABASE_FILE = "civicbot.sqlite3"  # as civicbot.app.runtime names it
SESSION_FILE = "session.json"  # as civicbot.transport.matrix names it
CRYPTO_DIR = "crypto"  # the encryption store, as civicbot.transport.crypto names it
KEY_BYTES = 32


class SecretKeyError(Exception):
    """The key is missing or unreadable where data already exists; the message says what to do."""


def installation_key(data_dir: Path) -> bytes:
    """This installation's secret, readable by the owner only.

    Created on the first start (a data directory with no data yet). Raises
    :class:`SecretKeyError` rather than make a new one over existing data."""
    path = data_dir / KEY_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = None
    except OSError as exc:
        raise SecretKeyError(f"cannot read {path} ({exc.strerror}): fix its permissions") from None
    if text is not None:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != KEY_BYTES:
            raise SecretKeyError(
                f"{path} is damaged (not {KEY_BYTES} bytes in hex): restore it from a backup "
                "with `civicbot restore`; a new key would break the data it keys"
            )
        return key
    if holds_data(data_dir):
        raise SecretKeyError(
            f"{path} is missing but {data_dir} already holds the bot's data: restore secret.key "
            "from a backup (`civicbot restore PATH`): a new key would stop secret ballots "
            "recognising replayed votes and people who asked to be forgotten. To start afresh "
            f"on purpose, move {data_dir} away."
        )
    return _create(path)


def keyed_hasher(secret: bytes) -> Callable[[str], str]:
    """HMAC-SHA256 with the installation secret, which stays inside this closure."""

    def keyed_hash(text: str) -> str:
        return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()

    return keyed_hash


def holds_data(data_dir: Path) -> bool:
    """True once the bot has run here: a saved login, or a database past its first migration
    (plugins migrate their tables on the first start, and the sync position is kept)."""
    if (data_dir / SESSION_FILE).exists():
        return True
    database = data_dir / DATABASE_FILE
    if not database.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    except sqlite3.Error:
        return True  # unreadable is not "empty": err on the side of keeping the key
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        checks = [
            ("core_migrations", "SELECT 1 FROM core_migrations WHERE owner != 'core' LIMIT 1"),
            ("core_kv", "SELECT 1 FROM core_kv LIMIT 1"),
            ("core_handled", "SELECT 1 FROM core_handled LIMIT 1"),
        ]
        return any(
            conn.execute(sql).fetchone() is not None for table, sql in checks if table in tables
        )
    except sqlite3.Error:
        return True
    finally:
        conn.close()


def write_key(path: Path, key: bytes) -> None:
    """Write ``key`` to ``path``, owner-only and atomically (a crash leaves old or new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _create(path: Path) -> bytes:
    key = os.urandom(KEY_BYTES)
    write_key(path, key)
    return key
