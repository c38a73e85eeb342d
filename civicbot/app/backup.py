"""``civicbot backup PATH`` and ``civicbot restore PATH``: everything in ``bot.data_dir`` that a
restored bot needs, copied consistently while the bot keeps running.

The database is copied with SQLite's online backup API from a connection of our own, in one
step: that is a snapshot of one moment (the bot's writes before it are in, later ones are not),
which a file copy of a WAL database is not (the newest commits live in ``-wal`` until a
checkpoint, and copying both files while they change can give a torn database). Deleted rows
stay gone: the database runs with ``secure_delete``, so free pages copied along are zeroed.

A backup is a directory holding the copied state and ``MANIFEST.json`` (what is in it, with
SHA-256 sums, checked again by restore). It contains the login session, ``secret.key`` and the
cross-signing keys: keep it as private as the bot's data directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from civicbot import __version__
from civicbot.storage.secret_key import (
    CRYPTO_DIR,
    DATABASE_FILE,
    KEY_FILE,
    SESSION_FILE,
    holds_data,
)
from civicbot.transport.crosssigning import CROSS_SIGNING_FILE

MANIFEST = "MANIFEST.json"
FORMAT = 1


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class StateItem:
    """One piece of ``bot.data_dir`` that a backup carries."""

    name: str  # relative to data_dir
    kind: Literal["sqlite", "file", "dir"]
    required: bool
    about: str


# Everything a restored bot needs, in the order it is copied. The encryption store belongs
# with session.json (the same device id): a bot restored with one but not the other must log
# in as a new device and cannot read what was encrypted before, so both are in every backup.
STATE: tuple[StateItem, ...] = (
    StateItem(DATABASE_FILE, "sqlite", True, "the database: polls, settings, sync position"),
    StateItem(KEY_FILE, "file", True, "the installation secret"),
    StateItem(SESSION_FILE, "file", False, "the login session (access token, device id)"),
    # The bot's identity to people who verified it: lost, it can only be replaced by new keys,
    # and every client that trusted the bot then warns that its identity changed.
    StateItem(CROSS_SIGNING_FILE, "file", False, "the account's cross-signing keys"),
    StateItem(CRYPTO_DIR, "dir", False, "the encryption keys of the bot's device"),
)
# Private keys: owner-only after a restore too, whatever the backup's copy came to be.
OWNER_ONLY = (KEY_FILE, CROSS_SIGNING_FILE)


def state_of(data_dir: Path) -> tuple[StateItem, ...]:
    """STATE, plus every other SQLite database a plugin keeps in ``data_dir`` beside the main
    one (the polls plugin's ``secret-ballots.sqlite3``: kept apart so that no copy of the files
    links a voter to a ballot). Each is copied with the online backup API, never as a file."""
    known = {item.name for item in STATE}
    extra = sorted(p.name for p in data_dir.glob("*.sqlite3") if p.name not in known)
    return STATE + tuple(StateItem(n, "sqlite", False, f"a plugin's database ({n})") for n in extra)


def backup(data_dir: Path, target: Path) -> list[str]:
    """Copy ``data_dir``'s state into the new directory ``target``; returns what was copied."""
    if not (data_dir / DATABASE_FILE).is_file():
        raise BackupError(f"{data_dir} holds no civicbot database: check bot.data_dir")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} already exists: give a new directory for each backup")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(target, 0o700)  # the session token and secret.key are inside
    copied: dict[str, dict[str, str]] = {}
    for item in state_of(data_dir):
        source = data_dir / item.name
        if not source.exists():
            if item.required:
                raise BackupError(f"{source} is missing: {item.about} is needed in a backup")
            continue
        destination = target / item.name
        if item.kind == "sqlite":
            _copy_database(source, destination)
        elif item.kind == "dir":
            _copy_dir(source, destination)
        else:
            shutil.copy2(source, destination)
        copied[item.name] = {"kind": item.kind, "sha256": _digest(destination)}
    manifest = {
        "format": FORMAT,
        "civicbot": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data_dir": str(data_dir.resolve()),
        "items": copied,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return list(copied)


def restore(source: Path, data_dir: Path, *, replace: bool = False) -> Path | None:
    """Put the backup in ``source`` into ``data_dir`` (the bot must be stopped).

    A data directory that already holds data is replaced only with ``replace``. Whatever state
    files are there are moved aside into a ``replaced-<UTC time>`` folder inside it, never
    deleted; that folder is returned (None when there was nothing)."""
    manifest = _checked_manifest(source)
    if holds_data(data_dir) and not replace:
        raise BackupError(
            f"{data_dir} already holds a bot's data: stop the bot and pass --replace to put the "
            "backup in its place (the current files are kept in a replaced-… folder there)"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    # Always, even for a directory with no data yet: a leftover -wal beside a restored database
    # would be read as part of it.
    aside = _move_aside(data_dir)
    for name, entry in manifest["items"].items():
        origin, destination = source / name, data_dir / name
        tmp = data_dir / f".{name}.restoring"
        if entry["kind"] == "dir":
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(origin, tmp)
        else:
            shutil.copy2(origin, tmp)
        if name in OWNER_ONLY:
            os.chmod(tmp, 0o600)
        os.replace(tmp, destination)
    return aside


def _copy_dir(source: Path, destination: Path) -> None:
    """A directory whose SQLite files (``*.db``: the encryption store) are copied with the
    online backup API, each a snapshot, and its other files as they are."""
    destination.mkdir(mode=0o700)
    for path in sorted(source.rglob("*")):
        target = destination / path.relative_to(source)
        if path.is_dir():
            target.mkdir(mode=0o700, exist_ok=True)
        elif path.suffix == ".db":
            _copy_database(path, target)
        elif not path.name.endswith(("-wal", "-shm", "-journal")):
            shutil.copy2(path, target)


def _copy_database(source: Path, destination: Path) -> None:
    """One-step online backup: one read transaction, so a snapshot of one moment. (Not a
    read-only connection: on a WAL database that fails when the bot is stopped and left no
    shared-memory file.) The bot's writes wait at most for the copy, which only reads."""
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(destination)
    try:
        src.backup(dst)  # pages=-1: all at once, under one read transaction
        dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        check = dst.execute("PRAGMA integrity_check").fetchone()
        if not check or check[0] != "ok":
            raise BackupError(f"the copy of {source} failed its integrity check: {check}")
    finally:
        dst.close()
        src.close()


def _checked_manifest(source: Path) -> dict:
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError):
        raise BackupError(f"{source} is not a civicbot backup (no readable {MANIFEST})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source} was made in backup format {manifest.get('format')}")
    items = manifest.get("items") or {}
    known = {item.name for item in STATE}
    for item in STATE:
        if item.required and item.name not in items:
            raise BackupError(f"{source} lacks {item.name} ({item.about})")
    for name, entry in items.items():
        if name not in known and not _plugin_database(name):
            raise BackupError(f"{source} holds {name!r}, which this civicbot does not restore")
        if _digest(source / name) != entry.get("sha256"):
            raise BackupError(f"{source / name} has changed since the backup was made")
    return manifest


def _plugin_database(name: str) -> bool:
    return name.endswith(".sqlite3") and "/" not in name and not name.startswith(".")


def _move_aside(data_dir: Path) -> Path | None:
    databases = [item.name for item in state_of(data_dir) if item.kind == "sqlite"]
    names = [item.name for item in state_of(data_dir)]
    names += [f"{db}{suffix}" for db in databases for suffix in ("-wal", "-shm", "-journal")]
    present = [name for name in names if (data_dir / name).exists()]
    if not present:
        return None
    aside = data_dir / time.strftime("replaced-%Y%m%dT%H%M%SZ", time.gmtime())
    aside.mkdir(mode=0o700)
    for name in present:
        os.replace(data_dir / name, aside / name)
    return aside


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
