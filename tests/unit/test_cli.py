"""The command line where an operator meets it: a config that can't log in, keys moved without
a terminal, and a backup of the demo's data."""

from __future__ import annotations

import io
import sqlite3

from civicbot.app.cli import main
from civicbot.storage.secret_key import installation_key

SERVER = '[matrix]\nhomeserver = "https://matrix.example.org"\nuser_id = "@bot:example.org"\n'


def config(tmp_path, extra=""):
    path = tmp_path / "config.toml"
    data = tmp_path / "data"
    path.write_text(f'{SERVER}encryption = false\n{extra}[bot]\ndata_dir = "{data}"\n')
    return path, data


def test_check_config_fails_when_the_bot_could_not_log_in(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CIVICBOT_MATRIX__PASSWORD", raising=False)
    monkeypatch.delenv("CIVICBOT_MATRIX__ACCESS_TOKEN", raising=False)
    path, _ = config(tmp_path)
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "matrix.password" in err and "access token" in err
    assert "CIVICBOT_MATRIX__PASSWORD" in err and "Traceback" not in err
    monkeypatch.setenv("CIVICBOT_MATRIX__PASSWORD", "secret")
    assert main(["check-config", "--config", str(path)]) == 0


def test_check_config_accepts_a_session_from_an_earlier_login(tmp_path, monkeypatch):
    monkeypatch.delenv("CIVICBOT_MATRIX__PASSWORD", raising=False)
    monkeypatch.delenv("CIVICBOT_MATRIX__ACCESS_TOKEN", raising=False)
    path, data = config(tmp_path)
    data.mkdir()
    (data / "session.json").write_text("{}")
    assert main(["check-config", "--config", str(path)]) == 0


def test_keys_export_without_a_terminal_asks_for_a_passphrase_file(tmp_path, capsys, monkeypatch):
    path, _ = config(tmp_path, 'password = "x"\n')
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = main(["keys", "export", str(tmp_path / "keys.txt"), "--config", str(path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "--passphrase-file" in err and "Traceback" not in err


def test_backup_with_no_config_backs_up_the_demo(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key in ("CIVICBOT_MATRIX__HOMESERVER", "CIVICBOT_BOT__DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    demo = tmp_path / "demo-data" / "bot"
    demo.mkdir(parents=True)
    conn = sqlite3.connect(demo / "civicbot.sqlite3")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    installation_key(demo)
    assert main(["backup", str(tmp_path / "copy")]) == 0
    captured = capsys.readouterr()
    assert "demo-data/bot" in captured.err and "Backed up demo-data/bot" in captured.out
    assert (tmp_path / "copy" / "civicbot.sqlite3").is_file()


def test_a_data_folder_the_bot_cannot_make_is_said_in_a_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    path = tmp_path / "config.toml"
    path.write_text(
        f'{SERVER}password = "x"\nencryption = false\n[bot]\ndata_dir = "{blocker / "data"}"\n'
    )
    assert main(["run", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"cannot use {blocker / 'data'} as the bot's data folder: Not a directory" in err
    assert "[bot] data_dir" in err and "Traceback" not in err


def test_restore_refuses_the_folder_of_a_running_bot(tmp_path, capsys):
    from civicbot.storage.data_lock import DataDirLock

    data = tmp_path / "data"
    data.mkdir()
    conn = sqlite3.connect(data / "civicbot.sqlite3")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    installation_key(data)
    assert main(["backup", str(tmp_path / "copy"), "--data-dir", str(data)]) == 0
    running = DataDirLock(data)
    running.acquire()  # the bot
    try:
        code = main(["restore", str(tmp_path / "copy"), "--replace", "--data-dir", str(data)])
    finally:
        running.release()
    err = capsys.readouterr().err
    assert code == 1 and "in use by a running civicbot" in err and "stop it first" in err
    assert not list(data.glob("replaced-*"))  # nothing was moved aside under it
    assert main(["restore", str(tmp_path / "copy"), "--replace", "--data-dir", str(data)]) == 0
