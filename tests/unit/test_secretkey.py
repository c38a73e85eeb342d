"""secret.key: made once for an empty data directory, never silently replaced over data."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest

from civicbot.storage.database import Database
from civicbot.storage.secret_key import SecretKeyError, installation_key


def test_first_start_makes_an_owner_only_key_that_later_starts_read(tmp_path):
    key = installation_key(tmp_path)
    assert len(key) == 32
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600
    assert installation_key(tmp_path) == key


async def _used_data_dir(path):
    """A data directory the bot has run in: a plugin migrated, a sync position kept."""
    db = await Database.open(path / "civicbot.sqlite3")
    await db.migrate("polls", ["CREATE TABLE polls_x (id INTEGER)"])
    await db.kv_set("sync_token", "s1")
    await db.close()


async def test_a_missing_key_over_existing_data_stops_the_start_and_makes_nothing(tmp_path):
    """Issue 9: a new key was created whenever the old one could not be read."""
    await _used_data_dir(tmp_path)
    with pytest.raises(SecretKeyError, match=r"secret\.key is missing .*civicbot restore"):
        installation_key(tmp_path)
    assert not (tmp_path / "secret.key").exists()


async def test_a_fresh_database_is_not_existing_data(tmp_path):
    """The runtime opens (and core-migrates) the database before the key is read."""
    await (await Database.open(tmp_path / "civicbot.sqlite3")).close()
    assert len(installation_key(tmp_path)) == 32


def test_a_saved_login_is_existing_data(tmp_path):
    (tmp_path / "session.json").write_text("{}")
    with pytest.raises(SecretKeyError):
        installation_key(tmp_path)


def test_a_damaged_key_is_never_replaced(tmp_path):
    (tmp_path / "secret.key").write_text("not hex at all")
    with pytest.raises(SecretKeyError, match="damaged"):
        installation_key(tmp_path)
    assert (tmp_path / "secret.key").read_text() == "not hex at all"


async def test_run_refuses_in_one_line_without_a_traceback(tmp_path):
    await _used_data_dir(tmp_path / "data")
    config = tmp_path / "config.toml"
    config.write_text(
        '[matrix]\nhomeserver = "https://matrix.example.invalid"\n'
        'user_id = "@bot:example.invalid"\npassword = "x"\n'
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "civicbot", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "secret.key is missing" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "data" / "secret.key").exists()
