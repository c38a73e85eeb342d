"""Encryption settings and files without a homeserver: the pickle key, the config keys,
check-config without the e2e extra, and the encryption store in a backup."""

from __future__ import annotations

import sqlite3

import pytest

from civicbot.app import cli
from civicbot.app.cli import main
from civicbot.config import ConfigError, MatrixSettings, load_settings
from civicbot.storage.secret_key import installation_key
from civicbot.transport import crypto
from civicbot.transport.crypto import pickle_key, store_file


def test_the_pickle_key_is_derived_not_the_secret_itself(tmp_path):
    secret = installation_key(tmp_path)
    key = pickle_key(secret)
    assert key == pickle_key(secret) and len(key) == 64
    assert secret.hex() not in key and key != "DEFAULT_KEY"
    assert pickle_key(bytes(32)) != key


def test_encryption_is_on_by_default_and_the_policy_is_checked(tmp_path):
    settings = MatrixSettings()
    assert settings.encryption is True and settings.unencrypted_rooms_policy == "leave"
    config = tmp_path / "config.toml"
    config.write_text('[matrix]\nencryption = false\nunencrypted_rooms_policy = "ignore"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert any(p.startswith("matrix.unencrypted_rooms_policy:") for p in caught.value.problems)


def test_check_config_says_in_one_line_when_the_e2e_extra_is_missing(tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.toml"
    config.write_text('[matrix]\nhomeserver = "https://matrix.example.org"\n')
    monkeypatch.setattr(crypto, "e2e_problem", lambda: "vodozemac is not installed")
    assert main(["check-config", "--config", str(config)]) == cli.EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert "matrix.encryption: vodozemac is not installed" in err
    assert "Traceback" not in err
    config.write_text("[matrix]\nencryption = false\n")
    assert main(["check-config", "--config", str(config)]) == 0


def test_the_encryption_store_is_backed_up_and_restored(tmp_path, capsys):
    live, backup, restored = tmp_path / "live", tmp_path / "backup", tmp_path / "restored"
    installation_key(live)
    sqlite3.connect(live / "civicbot.sqlite3").close()
    store = store_file(live / "crypto", "@bot:example.org", "DEV")
    store.parent.mkdir()
    conn = sqlite3.connect(store)
    conn.execute("CREATE TABLE keys (k TEXT)")
    conn.execute("INSERT INTO keys VALUES ('a room key')")
    conn.commit()  # kept open, as the running bot keeps it
    (live / "crypto" / "@bot:example.org_DEV_verified_devices").write_text("")
    try:
        assert main(["backup", str(backup), "--data-dir", str(live)]) == 0
    finally:
        conn.close()
    assert "crypto" in capsys.readouterr().out
    assert main(["restore", str(backup), "--data-dir", str(restored)]) == 0
    copy = sqlite3.connect(store_file(restored / "crypto", "@bot:example.org", "DEV"))
    try:
        assert copy.execute("SELECT k FROM keys").fetchall() == [("a room key",)]
    finally:
        copy.close()
    assert (restored / "crypto" / "@bot:example.org_DEV_verified_devices").exists()


class _Olm:
    def update_tracked_users(self, room) -> None:
        self.tracked = sorted(room.users)


class _Client:
    def __init__(self) -> None:
        self.user_id = "@bot:hs"
        self.olm = _Olm()
        self.rooms: dict = {}
        self.encrypted_rooms: set[str] = set()


class _Api:
    def __init__(self, state: list[dict]) -> None:
        self.state = state

    async def request_list(self, path: str) -> list[dict]:
        return self.state


def _member(user: str, membership: str, sender: str = "@bot:hs") -> dict:
    return {"type": "m.room.member", "state_key": user, "sender": sender,
            "event_id": f"$m-{user}", "origin_server_ts": 1,
            "content": {"membership": membership}}  # fmt: skip


async def test_a_room_the_bot_just_made_is_read_whole_even_when_a_sync_caught_it_half_made():
    """A sync that ran while createRoom was still writing the room gave nio the room without
    its m.room.encryption and the invite: the first private message went out in clear."""
    from nio import MatrixRoom

    from civicbot.transport.crypto import ENCRYPTION_STATE, RoomCrypto

    client = _Client()
    half = MatrixRoom("!dm:hs", client.user_id)  # what the racing sync brought
    client.rooms["!dm:hs"] = half
    whole = [
        {"type": "m.room.create", "state_key": "", "sender": "@bot:hs", "event_id": "$c",
         "origin_server_ts": 1, "content": {"room_version": "12"}},
        _member("@bot:hs", "join"),
        dict(ENCRYPTION_STATE, sender="@bot:hs", event_id="$e", origin_server_ts=1),
        _member("@ann:hs", "invite"),
    ]  # fmt: skip
    crypto = RoomCrypto(client, _Api(whole))  # type: ignore[arg-type]

    async def nothing() -> None:
        return None

    crypto.maintain = nothing  # type: ignore[method-assign]
    await crypto.ensure_room("!dm:hs")
    assert not client.rooms["!dm:hs"].encrypted  # a room it did not make: nio's own is kept

    crypto.made("!dm:hs")
    await crypto.ensure_room("!dm:hs")
    room = client.rooms["!dm:hs"]
    assert room.encrypted and "!dm:hs" in client.encrypted_rooms
    assert "@ann:hs" in room.invited_users and client.olm.tracked == ["@ann:hs", "@bot:hs"]
