"""Cross-signing: the signing helpers against the spec's test vectors and an independent
verifier (signedjson, the library Synapse checks signatures with), the key file, and the
choices ensure_cross_signed makes when the homeserver answers in ways Synapse in the
integration tests does not (SSO-only accounts, no password, a device that is not ours)."""

from __future__ import annotations

import logging
import re
import stat
from typing import Any

import pytest
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json

from civicbot.transport.crosssigning import (
    KEYS_QUERY,
    KEYS_UPLOAD,
    SIGNATURES_UPLOAD,
    CrossSigningError,
    CrossSigningKeys,
    Outcome,
    SigningKey,
    decode_base64,
    encode_base64,
    ensure_cross_signed,
    load_keys,
    save_keys,
    sign_json,
    verify_json,
)

# The Matrix spec's appendix "Signing JSON" test vectors (the same seed Synapse tests with).
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SPEC_EMPTY = (
    "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
)
SPEC_ONE_TWO = (
    "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
)
USER = "@civicbot:example.org"
PASSWORD = "the bot's password"  # spaces: never a chance part of a base64 key in a log
DEVICE = "BOTDEVICE"


def _verified_elsewhere(obj: dict[str, Any], signer: str, key: SigningKey) -> bool:
    """signedjson's verdict: it strips ``signatures`` and ``unsigned`` and canonicalises on
    its own."""
    verify_key = decode_verify_key_bytes(key.key_id, decode_base64(key.public_key))
    try:
        verify_signed_json(obj, signer, verify_key)
    except SignatureVerifyException:
        return False
    return True


def test_signatures_match_the_spec_test_vectors():
    key = SigningKey(decode_base64(SPEC_SEED))
    assert sign_json({}, "domain", key, "ed25519:1")["signatures"] == {
        "domain": {"ed25519:1": SPEC_EMPTY}
    }
    signed = sign_json({"one": 1, "two": "Two"}, "domain", key, "ed25519:1")
    assert signed["signatures"]["domain"]["ed25519:1"] == SPEC_ONE_TWO
    assert verify_json(signed, "domain", "ed25519:1", key.public_key)


def test_a_signature_covers_the_content_not_signatures_or_unsigned():
    key, other = SigningKey.generate(), SigningKey.generate()
    obj = {"b": [1, "ü"], "a": {"z": None, "y": True}, "unsigned": {"age": 5}}
    signed = sign_json(sign_json(obj, "@x:y", other), USER, key)
    assert signed["signatures"]["@x:y"] == sign_json(obj, "@x:y", other)["signatures"]["@x:y"]
    assert _verified_elsewhere(signed, USER, key) and verify_json(
        signed, USER, key.key_id, key.public_key
    )
    signed["unsigned"] = {"age": 6, "device_display_name": "renamed"}
    assert _verified_elsewhere(signed, USER, key)
    signed["a"]["z"] = 0
    assert not _verified_elsewhere(signed, USER, key)
    assert not verify_json(signed, USER, key.key_id, key.public_key)
    assert not verify_json(signed, USER, key.key_id, other.public_key)
    assert "signatures" not in obj  # the original is left alone


def test_keys_and_signatures_are_unpadded_base64():
    key = SigningKey.generate()
    assert len(key.public_key) == 43 and "=" not in key.public_key
    assert len(key.sign(b"x")) == 86 and "=" not in key.sign(b"x")
    assert decode_base64(encode_base64(b"fo")) == b"fo" and encode_base64(b"fo") == "Zm8"
    assert decode_base64("Zm8=") == b"fo"  # padded input is accepted too


def test_the_self_signing_key_is_the_spec_object_signed_by_the_master_key():
    keys = CrossSigningKeys.generate(USER)
    master, ssk = keys.master_key(), keys.self_signing_key()
    assert master == {
        "user_id": USER,
        "usage": ["master"],
        "keys": {f"ed25519:{keys.master.public_key}": keys.master.public_key},
    }
    assert ssk["usage"] == ["self_signing"] and ssk["user_id"] == USER
    assert ssk["keys"] == {f"ed25519:{keys.self_signing.public_key}": keys.self_signing.public_key}
    assert _verified_elsewhere(ssk, USER, keys.master)


def test_the_key_file_is_owner_only_and_round_trips(tmp_path):
    path = tmp_path / "data" / "cross-signing.json"
    assert load_keys(path, USER) is None
    keys = CrossSigningKeys.generate(USER)
    save_keys(path, keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_keys(path, USER)
    assert again is not None
    assert (again.master.seed, again.self_signing.seed) == (
        keys.master.seed,
        keys.self_signing.seed,
    )
    with pytest.raises(CrossSigningError, match=re.escape("not of @other:example.org")):
        load_keys(path, "@other:example.org")
    path.write_text('{"user_id": "@civicbot:example.org", "master_seed": "short"}')
    with pytest.raises(CrossSigningError, match=r"damaged.*restore"):
        load_keys(path, USER)


# ---------------------------------------------------------------- ensure_cross_signed's choices


class FakeKeysServer:
    """The three endpoints as a homeserver answers them, with the UIA flows a test picks."""

    def __init__(self, flows: list[list[str]], password: str = PASSWORD, params: Any = None):
        self.flows, self.password, self.params = flows, password, params or {}
        self.device_key = SigningKey.generate()
        device = {
            "user_id": USER,
            "device_id": DEVICE,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"ed25519:{DEVICE}": self.device_key.public_key, f"curve25519:{DEVICE}": "c"},
        }
        self.device = sign_json(device, USER, self.device_key, f"ed25519:{DEVICE}")
        self.device["unsigned"] = {"device_display_name": "civicbot"}
        self.cross_signing: dict[str, Any] = {}
        self.calls: list[str] = []

    async def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        status, answer = await self.request_status(method, path, body)
        assert status == 200, answer
        return answer

    async def request_status(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        self.calls.append(path)
        if path == KEYS_QUERY:
            answer = {"device_keys": {USER: {DEVICE: self.device}}}
            for usage in ("master_keys", "self_signing_keys"):
                if usage in self.cross_signing:
                    answer[usage] = {USER: self.cross_signing[usage]}
            return 200, answer
        if path == KEYS_UPLOAD:
            auth = body.get("auth")
            if self.cross_signing and not auth:
                return 401, {
                    "session": "S",
                    "flows": [{"stages": s} for s in self.flows],
                    "params": self.params,
                }
            if auth and auth.get("password") != self.password:
                return 401, {"errcode": "M_FORBIDDEN", "error": "Invalid password", "flows": []}
            self.cross_signing = {
                "master_keys": body["master_key"],
                "self_signing_keys": body["self_signing_key"],
            }
            return 200, {}
        if path == SIGNATURES_UPLOAD:
            signed = body[USER][DEVICE]
            self.device["signatures"] = signed["signatures"]
            return 200, {"failures": {}}
        raise AssertionError(path)


async def _ensure(server: FakeKeysServer, tmp_path, password: str | None = PASSWORD, **kwargs: Any):
    return await ensure_cross_signed(
        server,
        USER,
        DEVICE,
        device_key=server.device_key.public_key,
        password=password,
        key_file=tmp_path / "cross-signing.json",
        **kwargs,
    )


def _foreign_keys(server: FakeKeysServer) -> str:
    theirs = CrossSigningKeys.generate(USER)
    server.cross_signing = {
        "master_keys": theirs.master_key(),
        "self_signing_keys": theirs.self_signing_key(),
    }
    return theirs.master.public_key


async def test_first_start_publishes_then_later_starts_do_nothing(tmp_path):
    server = FakeKeysServer([["m.login.password"]])
    first = await _ensure(server, tmp_path)
    assert first.outcome is Outcome.PUBLISHED and first.signed
    keys = load_keys(tmp_path / "cross-signing.json", USER)
    assert keys is not None and first.master_key == keys.master.public_key
    assert _verified_elsewhere(server.device, USER, keys.self_signing)
    server.calls.clear()
    again = await _ensure(server, tmp_path)
    assert again.outcome is Outcome.ALREADY_SIGNED
    assert server.calls == [KEYS_QUERY]


async def test_other_keys_on_the_server_are_left_alone_unless_the_operator_asks(tmp_path, caplog):
    server = FakeKeysServer([["m.login.password"]])
    theirs = _foreign_keys(server)
    with caplog.at_level(logging.WARNING, "civicbot.transport.crosssigning"):
        result = await _ensure(server, tmp_path)
    assert result.outcome is Outcome.UNSIGNED
    assert theirs in caplog.text and "cross_signing_reset" in caplog.text
    assert server.calls == [KEYS_QUERY]
    assert not (tmp_path / "cross-signing.json").exists()
    caplog.clear()
    with caplog.at_level(logging.WARNING, "civicbot.transport.crosssigning"):
        reset = await _ensure(server, tmp_path, replace_server_keys=True)
    assert f"replaced {USER}'s cross-signing master key {theirs}" in caplog.text
    assert reset.outcome is Outcome.PUBLISHED and reset.master_key != theirs
    assert (
        server.cross_signing["master_keys"]
        == load_keys(tmp_path / "cross-signing.json", USER).master_key()
    )  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("flows", "params", "password", "says"),
    [
        ([["m.login.sso"]], {}, PASSWORD, "needs m.login.sso"),
        (
            [["m.oauth"]],
            {"m.oauth": {"url": "https://auth.example/x"}},
            PASSWORD,
            "https://auth.example/x",
        ),
        ([["m.login.password"]], {}, None, "only an access token is configured"),
        ([["m.login.password"]], {}, "not the password", "refused the password"),
    ],
)
async def test_when_the_password_cannot_pass_the_bot_says_so_once_and_runs_on_unsigned(
    tmp_path, caplog, flows, params, password, says
):
    server = FakeKeysServer(flows, params=params)
    _foreign_keys(server)
    with caplog.at_level(logging.INFO, "civicbot.transport.crosssigning"):
        result = await _ensure(server, tmp_path, password, replace_server_keys=True)
    assert result.outcome is Outcome.UNSIGNED and says in result.detail
    (line,) = caplog.records
    assert line.levelname == "WARNING" and says in line.getMessage()
    assert SIGNATURES_UPLOAD not in server.calls
    assert PASSWORD not in caplog.text and "not the password" not in caplog.text


async def test_a_device_the_homeserver_made_up_is_never_signed(tmp_path):
    server = FakeKeysServer([["m.login.password"]])
    impostor = SigningKey.generate()
    server.device["keys"][f"ed25519:{DEVICE}"] = impostor.public_key
    server.device = sign_json(server.device, USER, impostor, f"ed25519:{DEVICE}")
    result = await _ensure(server, tmp_path)  # device_key is still the real device's
    assert result.outcome is Outcome.UNSIGNED and "not what this device" in result.detail
    assert server.calls == [KEYS_QUERY]


async def test_a_master_key_the_bot_cannot_read_is_not_overwritten_either(tmp_path):
    server = FakeKeysServer([["m.login.password"]])
    _foreign_keys(server)
    server.cross_signing["master_keys"]["keys"]["ed25519:second"] = "second"
    result = await _ensure(server, tmp_path)
    assert result.outcome is Outcome.UNSIGNED and "master unreadable" in result.detail
    assert server.calls == [KEYS_QUERY]
