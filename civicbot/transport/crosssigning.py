"""Cross-signing the bot's own device, which matrix-nio does not do (matrix-nio#229).

Element hides or warns about devices their owner has not cross-signed, bots included. So the
bot keeps its account's master and self-signing keys (ed25519) in
``bot.data_dir/cross-signing.json``, publishes them once, and signs each device it logs in as
with the self-signing key.

The keys are made once and never silently replaced: they are the bot's identity to everyone
else, whose clients warn when it changes. A new device (a new login after the crypto store was
lost) is signed with the same kept keys. When the homeserver holds other keys than ours
(someone reset them from another client, or this file was lost) the bot says so and stays
unsigned; it replaces them only when the operator asks (``replace_server_keys``, the
``matrix.cross_signing_reset`` setting).

Signing is ed25519 from ``cryptography`` (pyca, already a dependency). vodozemac's Python
bindings (0.10) verify ed25519 signatures but sign only with the olm account's own device key:
they offer no key pair we could create, keep and sign other JSON with.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import logging
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from canonicaljson import encode_canonical_json
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from civicbot.transport import TransportError

log = logging.getLogger("civicbot.transport.crosssigning")

CROSS_SIGNING_FILE = "cross-signing.json"
KEYS_QUERY = "/_matrix/client/v3/keys/query"
KEYS_UPLOAD = "/_matrix/client/v3/keys/device_signing/upload"
SIGNATURES_UPLOAD = "/_matrix/client/v3/keys/signatures/upload"
PASSWORD_STAGE = "m.login.password"
RESET_HINT = (
    "restore cross-signing.json from a backup, or start once with "
    "matrix.cross_signing_reset = true to publish new keys (people who verified the bot will "
    "see its identity change)"
)


class CrossSigningError(Exception):
    """Cross-signing cannot go on; the message says why and what to do."""


# ------------------------------------------------------------------ signing, pure functions


def encode_base64(data: bytes) -> str:
    """Unpadded standard base64, as Matrix writes keys and signatures."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def decode_base64(text: str) -> bytes:
    """Standard base64 with or without padding (the spec asks readers to take both)."""
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


class SigningKey:
    """One ed25519 key pair, kept as its 32-byte seed."""

    def __init__(self, seed: bytes):
        self.seed = seed
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key = encode_base64(public)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(os.urandom(32))

    @property
    def key_id(self) -> str:
        """``ed25519:<public key>``: cross-signing keys are named by their own public key."""
        return f"ed25519:{self.public_key}"

    def sign(self, message: bytes) -> str:
        return encode_base64(self._private.sign(message))


def signing_bytes(obj: dict[str, Any]) -> bytes:
    """What a Matrix signature covers: canonical JSON of ``obj`` without ``signatures`` and
    ``unsigned``."""
    return encode_canonical_json(
        {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    )


def sign_json(
    obj: dict[str, Any], signer: str, key: SigningKey, key_id: str | None = None
) -> dict[str, Any]:
    """A copy of ``obj`` with ``signatures[signer][key_id]`` added beside the ones it has.
    ``key_id`` defaults to ``key.key_id``, the name of a cross-signing key (a device's key
    is named ``ed25519:<device id>`` instead)."""
    signed = copy.deepcopy(obj)
    signature = key.sign(signing_bytes(obj))
    signed.setdefault("signatures", {}).setdefault(signer, {})[key_id or key.key_id] = signature
    return signed


def verify_json(obj: dict[str, Any], signer: str, key_id: str, public_key: str) -> bool:
    """True when ``obj`` carries a valid signature by ``public_key`` under ``signer``/``key_id``."""
    signature = ((obj.get("signatures") or {}).get(signer) or {}).get(key_id)
    if not isinstance(signature, str):
        return False
    try:
        verifier = Ed25519PublicKey.from_public_bytes(decode_base64(public_key))
        verifier.verify(decode_base64(signature), signing_bytes(obj))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


@dataclass(frozen=True)
class CrossSigningKeys:
    """The account's master key and the self-signing key it vouches for."""

    user_id: str
    master: SigningKey
    self_signing: SigningKey

    @classmethod
    def generate(cls, user_id: str) -> CrossSigningKeys:
        return cls(user_id, SigningKey.generate(), SigningKey.generate())

    def master_key(self) -> dict[str, Any]:
        """The master key as the spec's CrossSigningKey object."""
        return _key_object(self.user_id, "master", self.master)

    def self_signing_key(self) -> dict[str, Any]:
        """The self-signing CrossSigningKey, signed by the master key."""
        body = _key_object(self.user_id, "self_signing", self.self_signing)
        return sign_json(body, self.user_id, self.master)


def _key_object(user_id: str, usage: str, key: SigningKey) -> dict[str, Any]:
    return {"user_id": user_id, "usage": [usage], "keys": {key.key_id: key.public_key}}


def save_keys(path: Path, keys: CrossSigningKeys) -> None:
    """Write the key file owner-only and atomically (a crash leaves the old file or the new)."""
    data = {
        "user_id": keys.user_id,
        "master_seed": encode_base64(keys.master.seed),
        "self_signing_seed": encode_base64(keys.self_signing.seed),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_keys(path: Path, user_id: str) -> CrossSigningKeys | None:
    """The kept keys of ``user_id``; None when there is no key file yet."""
    try:
        data = json.loads(path.read_text())
        keys = CrossSigningKeys(
            str(data["user_id"]),
            SigningKey(decode_base64(data["master_seed"])),
            SigningKey(decode_base64(data["self_signing_seed"])),
        )
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CrossSigningError(
            f"cannot read {path} ({exc.strerror}): fix its permissions"
        ) from None
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise CrossSigningError(f"{path} is damaged: {RESET_HINT}") from None
    if keys.user_id != user_id:
        raise CrossSigningError(
            f"{path} holds the cross-signing keys of {keys.user_id}, not of {user_id}: "
            "point bot.data_dir at this account's own data"
        )
    return keys


# --------------------------------------------------------------------- talking to the server


class KeysApi(Protocol):
    """The part of :class:`civicbot.transport.http.HomeserverApi` cross-signing uses."""

    async def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]: ...

    async def request_status(self, method: str, path: str, body: Any = None) -> tuple[int, Any]: ...


class Outcome(StrEnum):
    ALREADY_SIGNED = "already signed"  # nothing to do: the usual start
    SIGNED = "signed"  # a new device, signed with the kept keys
    PUBLISHED = "published"  # keys published (first start, or a reset), then the device signed
    UNSIGNED = "unsigned"  # could not; ``detail`` says why and what to do


@dataclass(frozen=True)
class CrossSigningResult:
    outcome: Outcome
    detail: str  # the line that was logged
    master_key: str | None = None  # our master public key, for people comparing fingerprints

    @property
    def signed(self) -> bool:
        return self.outcome is not Outcome.UNSIGNED


async def ensure_cross_signed(
    api: KeysApi,
    user_id: str,
    device_id: str,
    *,
    device_key: str,
    password: str | None,
    key_file: Path,
    replace_server_keys: bool = False,
) -> CrossSigningResult:
    """Make sure this device is signed by the account's self-signing key; call it after every
    login, once the device keys are uploaded.

    ``device_key`` is the device's own ed25519 key, as the local crypto store knows it: the
    bot signs only that device, never whatever the homeserver says the device is. The password
    answers the homeserver's user-interactive auth when publishing keys asks for it (Synapse
    asks only to replace keys, not for the first ones). Never raises for the homeserver's or
    the key file's sake: the result (and one logged line) says what happened, and the bot runs
    on unsigned when it could not sign."""
    try:
        outcome, detail, keys = await _ensure(
            api, user_id, device_id, device_key, password, key_file, replace_server_keys
        )
    except (CrossSigningError, TransportError, OSError) as exc:  # OSError: writing key_file
        outcome, detail, keys = Outcome.UNSIGNED, f"cannot cross-sign: {exc}", None
    if outcome is Outcome.UNSIGNED:
        log.warning("device %s stays unsigned: %s", device_id, detail)
    else:
        log.info("device %s: %s", device_id, detail)
    return CrossSigningResult(outcome, detail, keys.master.public_key if keys else None)


async def _ensure(
    api: KeysApi,
    user_id: str,
    device_id: str,
    device_key: str,
    password: str | None,
    key_file: Path,
    replace: bool,
) -> tuple[Outcome, str, CrossSigningKeys | None]:
    ours = load_keys(key_file, user_id)
    listing = await api.request("POST", KEYS_QUERY, {"device_keys": {user_id: [device_id]}})
    device = ((listing.get("device_keys") or {}).get(user_id) or {}).get(device_id)
    if not isinstance(device, dict):
        raise CrossSigningError(
            f"the homeserver has no keys for device {device_id}: upload them first"
        )
    _check_own_device(device, user_id, device_id, device_key)
    published_master = (listing.get("master_keys") or {}).get(user_id)
    server_master = _public_key(published_master)
    server_ssk = _public_key((listing.get("self_signing_keys") or {}).get(user_id))

    if ours is not None and (server_master, server_ssk) == (
        ours.master.public_key,
        ours.self_signing.public_key,
    ):
        ssk = ours.self_signing
        if verify_json(device, user_id, ssk.key_id, ssk.public_key):
            return (
                Outcome.ALREADY_SIGNED,
                f"cross-signed by master key {ours.master.public_key}",
                ours,
            )
        await _sign_device(api, ours, device)
        return Outcome.SIGNED, f"signed with the kept keys (master {ours.master.public_key})", ours

    foreign = published_master is not None and (
        ours is None or server_master != ours.master.public_key
    )
    if foreign and not replace:
        where = f"not the ones in {key_file}" if ours else f"and {key_file} is missing"
        detail = (
            f"the homeserver holds other cross-signing keys for {user_id} "
            f"(master {server_master or 'unreadable'}), {where}: someone reset them from "
            f"another client, or the key file was lost. To fix: {RESET_HINT}"
        )
        return Outcome.UNSIGNED, detail, ours
    if ours is None:
        ours = CrossSigningKeys.generate(user_id)
        save_keys(key_file, ours)
    refusal = await _publish(api, ours, password)
    if refusal:
        return Outcome.UNSIGNED, refusal, ours
    if foreign:
        log.warning(
            "replaced %s's cross-signing master key %s with ours (matrix.cross_signing_reset): "
            "people who verified the bot will see its identity change",
            user_id,
            server_master,
        )
    await _sign_device(api, ours, device)
    return Outcome.PUBLISHED, f"published master key {ours.master.public_key} and signed", ours


def _check_own_device(
    device: dict[str, Any], user_id: str, device_id: str, device_key: str
) -> None:
    """Refuse to vouch for keys the device did not make: a homeserver could hand back others."""
    key_id = f"ed25519:{device_id}"
    keys = device.get("keys")
    if (
        device.get("user_id") != user_id
        or device.get("device_id") != device_id
        or not isinstance(keys, dict)
        or keys.get(key_id) != device_key
        or not verify_json(device, user_id, key_id, device_key)
    ):
        raise CrossSigningError(
            f"the homeserver's copy of device {device_id}'s keys is not what this device "
            "uploaded and signed: not vouching for it"
        )


def _public_key(cross_signing_key: Any) -> str | None:
    """The ed25519 public key of a CrossSigningKey object from /keys/query."""
    if not isinstance(cross_signing_key, dict):
        return None
    keys = cross_signing_key.get("keys") or {}
    found = [v for k, v in keys.items() if k.startswith("ed25519:") and isinstance(v, str)]
    return found[0] if len(found) == 1 else None


async def _publish(api: KeysApi, keys: CrossSigningKeys, password: str | None) -> str | None:
    """Upload the master and self-signing keys, through user-interactive auth with the password
    when the homeserver asks; None when done, else why not (one line for the log)."""
    body: dict[str, Any] = {
        "master_key": keys.master_key(),
        "self_signing_key": keys.self_signing_key(),
    }
    status, answer = await api.request_status("POST", KEYS_UPLOAD, body)
    if status == 200:
        return None
    answer = answer if isinstance(answer, dict) else {}
    if status != 401 or not isinstance(answer.get("flows"), list):
        raise TransportError(answer.get("error", f"HTTP {status}"), answer.get("errcode", ""))
    flows = [flow.get("stages") for flow in answer["flows"] if isinstance(flow, dict)]
    if [PASSWORD_STAGE] not in flows:
        asked = " or ".join("+".join(map(str, stages or [])) for stages in flows) or "nothing known"
        url = ((answer.get("params") or {}).get("m.oauth") or {}).get("url")
        approve = f" (approve the reset at {url}, then restart)" if url else ""
        return (
            f"publishing cross-signing keys needs {asked}{approve}; the bot can only answer "
            "with the account password"
        )
    if not password:
        return (
            "the homeserver asks for the account password to publish cross-signing keys, and "
            "only an access token is configured: set matrix.password too"
        )
    body["auth"] = {
        "type": PASSWORD_STAGE,
        "identifier": {"type": "m.id.user", "user": keys.user_id},
        "password": password,
        "session": answer.get("session"),
    }
    status, answer = await api.request_status("POST", KEYS_UPLOAD, body)
    if status == 200:
        return None
    answer = answer if isinstance(answer, dict) else {}
    if status == 401:
        why = answer.get("error") or answer.get("errcode") or "refused"
        return (
            f"the homeserver refused the password for publishing cross-signing keys ({why}): "
            "check matrix.password"
        )
    raise TransportError(answer.get("error", f"HTTP {status}"), answer.get("errcode", ""))


async def _sign_device(api: KeysApi, keys: CrossSigningKeys, device: dict[str, Any]) -> None:
    """Sign the device's keys (as the device uploaded them, with their own signatures and
    without ``unsigned``) with the self-signing key, and upload the signature."""
    plain = {k: v for k, v in device.items() if k != "unsigned"}
    signed = sign_json(plain, keys.user_id, keys.self_signing)
    device_id = str(device["device_id"])
    answer = await api.request("POST", SIGNATURES_UPLOAD, {keys.user_id: {device_id: signed}})
    failure = ((answer.get("failures") or {}).get(keys.user_id) or {}).get(device_id)
    if failure:
        raise CrossSigningError(f"the homeserver refused the device's signature: {failure}")
