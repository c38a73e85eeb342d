"""Cross-signing against a real Synapse: the bot logs in as an encrypting nio client, uploads
its device keys, signs itself, and another user checks the whole chain (device ← self-signing
key ← master key) with signedjson, the library Synapse verifies with, not with our code."""

from __future__ import annotations

import base64
import logging
import secrets
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient, AsyncClientConfig, KeysUploadResponse, LoginResponse
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json

from civicbot.testing.synapse import LocalSynapse
from civicbot.transport.crosssigning import (
    CROSS_SIGNING_FILE,
    KEYS_QUERY,
    KEYS_UPLOAD,
    CrossSigningKeys,
    CrossSigningResult,
    Outcome,
    ensure_cross_signed,
    load_keys,
)
from civicbot.transport.http import HomeserverApi
from tests.integration.conftest import PASSWORD, unique

Login = Callable[[str, bool], Awaitable[AsyncClient]]


@pytest.fixture
async def login(synapse: LocalSynapse, tmp_path: Path) -> AsyncIterator[Login]:
    """``await login(user_id, encrypted)``: a new nio login (a new device); an encrypted one has
    its own crypto store and has uploaded its device keys, as the bot's transport does."""
    clients: list[AsyncClient] = []

    async def make(user_id: str, encrypted: bool) -> AsyncClient:
        store = tmp_path / f"store{len(clients)}"
        store.mkdir()
        config = AsyncClientConfig(
            encryption_enabled=encrypted,
            store_sync_tokens=False,
            pickle_key=secrets.token_hex(16),
        )
        client = AsyncClient(synapse.url, user_id, store_path=str(store), config=config)
        clients.append(client)
        assert isinstance(await client.login(PASSWORD, device_name="civicbot"), LoginResponse)
        if encrypted:
            assert isinstance(await client.keys_upload(), KeysUploadResponse)
        return client

    yield make
    for client in clients:
        await client.close()


async def _cross_sign(client: AsyncClient, key_file: Path, **kwargs: Any) -> CrossSigningResult:
    """How the transport calls it after login and the device keys' upload."""
    assert client.olm is not None
    return await ensure_cross_signed(
        HomeserverApi(client),
        client.user_id,
        client.device_id,
        device_key=client.olm.account.identity_keys["ed25519"],
        password=kwargs.pop("password", PASSWORD),
        key_file=key_file,
        **kwargs,
    )


def _only_key(cross_signing_key: dict[str, Any]) -> tuple[str, str]:
    ((key_id, public),) = cross_signing_key["keys"].items()
    assert key_id == f"ed25519:{public}"
    return key_id, public


def _verify(obj: dict[str, Any], signer: str, key_id: str, public: str) -> None:
    """Raises unless ``obj`` carries a valid signature by that key (signedjson decides)."""
    verify_key = decode_verify_key_bytes(
        key_id, base64.b64decode(public + "=" * (-len(public) % 4))
    )
    assert obj["signatures"][signer].get(key_id), f"no signature by {key_id}"
    verify_signed_json(obj, signer, verify_key)


async def _as_seen_by(other: AsyncClient, bot: str) -> dict[str, Any]:
    return await HomeserverApi(other).request("POST", KEYS_QUERY, {"device_keys": {bot: []}})


def _check_chain(seen: dict[str, Any], bot: str, device_id: str, keys: CrossSigningKeys) -> None:
    master = seen["master_keys"][bot]
    ssk = seen["self_signing_keys"][bot]
    assert master["usage"] == ["master"] and ssk["usage"] == ["self_signing"]
    master_id, master_public = _only_key(master)
    ssk_id, ssk_public = _only_key(ssk)
    assert (master_public, ssk_public) == (keys.master.public_key, keys.self_signing.public_key)
    _verify(ssk, bot, master_id, master_public)
    _verify(seen["device_keys"][bot][device_id], bot, ssk_id, ssk_public)


async def test_the_bot_signs_its_device_once_and_a_new_device_with_the_same_keys(
    synapse: LocalSynapse, login: Login, tmp_path: Path
):
    bot = synapse.register(unique("civicbot"), PASSWORD)
    other = await login(synapse.register(unique("ann"), PASSWORD), False)
    key_file = tmp_path / "data" / CROSS_SIGNING_FILE
    first = await login(bot, True)

    # Synapse asks no password for the first keys (MSC3967): a token-only bot gets them too.
    result = await _cross_sign(first, key_file, password=None)
    assert result.outcome is Outcome.PUBLISHED, result.detail
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = load_keys(key_file, bot)
    assert keys is not None and result.master_key == keys.master.public_key
    _check_chain(await _as_seen_by(other, bot), bot, first.device_id, keys)

    again = await _cross_sign(first, key_file)
    assert again.outcome is Outcome.ALREADY_SIGNED, again.detail
    kept = load_keys(key_file, bot)
    assert kept is not None and kept.master.seed == keys.master.seed

    # A new login (say the crypto store was lost): signed with the kept keys, nothing republished.
    second = await login(bot, True)
    assert second.device_id != first.device_id
    signed = await _cross_sign(second, key_file, password=None)
    assert signed.outcome is Outcome.SIGNED, signed.detail
    seen = await _as_seen_by(other, bot)
    _check_chain(seen, bot, second.device_id, keys)
    _check_chain(seen, bot, first.device_id, keys)


async def test_keys_made_elsewhere_are_replaced_only_when_asked_and_through_the_password(
    synapse: LocalSynapse, login: Login, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    bot = synapse.register(unique("civicbot"), PASSWORD)
    key_file = tmp_path / "data" / CROSS_SIGNING_FILE
    device = await login(bot, True)
    theirs = CrossSigningKeys.generate(bot)  # as another client of the account would make them
    await HomeserverApi(device).request(
        "POST",
        KEYS_UPLOAD,
        {"master_key": theirs.master_key(), "self_signing_key": theirs.self_signing_key()},
    )

    with caplog.at_level(logging.WARNING, "civicbot.transport.crosssigning"):
        left = await _cross_sign(device, key_file)
    assert left.outcome is Outcome.UNSIGNED
    assert theirs.master.public_key in caplog.text and "cross_signing_reset" in caplog.text
    assert not key_file.exists()

    token_only = await _cross_sign(device, key_file, password=None, replace_server_keys=True)
    assert token_only.outcome is Outcome.UNSIGNED
    assert "only an access token" in token_only.detail
    wrong = await _cross_sign(device, key_file, password="not it", replace_server_keys=True)
    assert wrong.outcome is Outcome.UNSIGNED and "refused the password" in wrong.detail

    replaced = await _cross_sign(device, key_file, replace_server_keys=True)
    assert replaced.outcome is Outcome.PUBLISHED, replaced.detail
    ours = load_keys(key_file, bot)
    assert ours is not None and ours.master.public_key != theirs.master.public_key
    other = await login(synapse.register(unique("ben"), PASSWORD), False)
    _check_chain(await _as_seen_by(other, bot), bot, device.device_id, ours)
    assert (await _cross_sign(device, key_file)).outcome is Outcome.ALREADY_SIGNED
