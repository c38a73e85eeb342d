"""civicbot backup / restore: the CLI, on a database the bot still holds open."""

from __future__ import annotations

import json
import sqlite3
import stat

from civicbot.app.cli import main
from civicbot.storage.database import Database
from civicbot.storage.secret_key import installation_key
from civicbot.transport.crosssigning import CrossSigningKeys, load_keys, save_keys


async def _running_bot_data(data_dir):
    """A data directory as a running bot leaves it: recent commits only in the WAL."""
    db = await Database.open(data_dir / "civicbot.sqlite3")
    key = installation_key(data_dir)  # made on the first start, before any data
    await db.migrate("polls", ["CREATE TABLE polls_x (id INTEGER)"])
    await db.executemany("INSERT INTO polls_x VALUES (?)", [(n,) for n in range(100)])
    (data_dir / "session.json").write_text('{"device_id": "DEV"}')
    return db, key


def _rows(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM polls_x").fetchone()[0]
    finally:
        conn.close()


async def test_backup_while_open_then_restore_elsewhere(tmp_path, capsys):
    live, backup, restored = tmp_path / "live", tmp_path / "backup", tmp_path / "restored"
    db, key = await _running_bot_data(live)
    try:
        assert (live / "civicbot.sqlite3-wal").stat().st_size > 0  # a file copy would miss rows
        assert main(["backup", str(backup), "--data-dir", str(live)]) == 0
    finally:
        await db.close()
    assert "civicbot.sqlite3, secret.key, session.json" in capsys.readouterr().out
    assert not (backup / "civicbot.sqlite3-wal").exists()
    assert _rows(backup / "civicbot.sqlite3") == 100
    assert main(["restore", str(backup), "--data-dir", str(restored)]) == 0
    assert _rows(restored / "civicbot.sqlite3") == 100
    assert installation_key(restored) == key
    assert json.loads((restored / "session.json").read_text()) == {"device_id": "DEV"}


async def test_restore_never_overwrites_data_unasked_and_keeps_what_it_replaces(tmp_path, capsys):
    live, backup = tmp_path / "live", tmp_path / "backup"
    db, key = await _running_bot_data(live)
    await db.close()
    assert main(["backup", str(backup), "--data-dir", str(live)]) == 0
    assert main(["backup", str(backup), "--data-dir", str(live)]) == 1  # never over a backup
    assert "already exists" in capsys.readouterr().err
    (live / "secret.key").unlink()  # the disaster: data without its key
    assert main(["restore", str(backup), "--data-dir", str(live)]) == 1
    assert "--replace" in capsys.readouterr().err
    assert not (live / "secret.key").exists()
    assert main(["restore", str(backup), "--data-dir", str(live), "--replace"]) == 0
    assert installation_key(live) == key
    (aside,) = live.glob("replaced-*")
    assert (aside / "civicbot.sqlite3").exists() and (aside / "session.json").exists()


async def test_a_changed_backup_is_refused(tmp_path, capsys):
    live, backup = tmp_path / "live", tmp_path / "backup"
    db, _ = await _running_bot_data(live)
    await db.close()
    assert main(["backup", str(backup), "--data-dir", str(live)]) == 0
    (backup / "secret.key").write_text("00" * 32)
    assert main(["restore", str(backup), "--data-dir", str(tmp_path / "new")]) == 1
    assert "has changed since the backup" in capsys.readouterr().err
    assert not (tmp_path / "new" / "secret.key").exists()


async def test_a_plugins_own_database_file_is_backed_up_and_restored(tmp_path, capsys):
    """The polls plugin keeps secret ballots in secret-ballots.sqlite3 beside the main file:
    a backup without it would lose every secret vote."""
    live, backup, restored = tmp_path / "live", tmp_path / "backup", tmp_path / "restored"
    db, _ = await _running_bot_data(live)
    ballots = sqlite3.connect(live / "secret-ballots.sqlite3")
    ballots.execute("CREATE TABLE polls_x (id INTEGER)")
    ballots.executemany("INSERT INTO polls_x VALUES (?)", [(n,) for n in range(7)])
    ballots.commit()
    try:
        assert main(["backup", str(backup), "--data-dir", str(live)]) == 0
    finally:
        ballots.close()
        await db.close()
    assert "secret-ballots.sqlite3" in capsys.readouterr().out
    assert main(["restore", str(backup), "--data-dir", str(restored)]) == 0
    assert _rows(restored / "secret-ballots.sqlite3") == 7


async def test_the_cross_signing_keys_are_backed_up_and_restored_owner_only(tmp_path, capsys):
    """Lost, they can only be replaced by new keys, and everyone who verified the bot would be
    warned that its identity changed."""
    live, backup, restored = tmp_path / "live", tmp_path / "backup", tmp_path / "restored"
    db, _ = await _running_bot_data(live)
    await db.close()
    keys = CrossSigningKeys.generate("@civicbot:example.org")
    save_keys(live / "cross-signing.json", keys)
    assert main(["backup", str(backup), "--data-dir", str(live)]) == 0
    assert "cross-signing.json" in capsys.readouterr().out
    assert main(["restore", str(backup), "--data-dir", str(restored)]) == 0
    assert stat.S_IMODE((restored / "cross-signing.json").stat().st_mode) == 0o600
    again = load_keys(restored / "cross-signing.json", "@civicbot:example.org")
    assert again is not None and again.master.seed == keys.master.seed
