"""End-to-end encryption for the Matrix transport: the device's key store and what nio leaves
to us.

nio decrypts the timeline of each ``/sync`` itself. Events the bot fetches over plain HTTP
(a gap paged back, a poll's responses recounted from ``/relations``) arrive still encrypted:
:meth:`RoomCrypto.decrypt` opens them with the same keys. Before a send nio must know the room
(its members, whether it is encrypted); a room the bot has just created or joined is not in a
sync yet, so :meth:`RoomCrypto.ensure_room` loads its state first.

The store (``bot.data_dir/crypto/<user>_<device>.db``, SQLite) holds the device's private keys
and every room key it has received, sealed with a pickle key derived from the installation
secret. A device id and its store are kept and lost together (DESIGN.md §4).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nio import AsyncClient, AsyncClientConfig, MatrixRoom, MegolmEvent, RoomMemberEvent
from nio import Event as NioEvent
from nio.exceptions import EncryptionError

from civicbot.storage.secret_key import CRYPTO_DIR, SESSION_FILE, installation_key
from civicbot.transport.http import HomeserverApi

log = logging.getLogger("civicbot.transport.matrix")

STORE_DIR = CRYPTO_DIR  # inside bot.data_dir, beside session.json
MEGOLM = "m.megolm.v1.aes-sha2"
ENCRYPTION_STATE = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}
_PICKLE_LABEL = b"civicbot: matrix-nio crypto store pickle key, v1"


def e2e_problem() -> str | None:
    """Why encryption cannot be switched on in this installation, in one line; or None."""
    try:
        from nio.crypto import ENCRYPTION_ENABLED
    except ImportError:  # pragma: no cover - nio itself is a dependency
        ENCRYPTION_ENABLED = False
    if ENCRYPTION_ENABLED:
        return None
    return (
        "matrix.encryption is on but matrix-nio's encryption support (vodozemac) is not "
        "installed: run `pip install 'matrix-nio[e2e]'`, or set matrix.encryption = false"
    )


def pickle_key(secret: bytes) -> str:
    """The key sealing the store: an HMAC of a fixed label under the installation secret, so
    the secret itself is never handed to nio and this key opens nothing else."""
    return hmac.new(secret, _PICKLE_LABEL, hashlib.sha256).hexdigest()


def store_file(store_dir: Path, user_id: str, device_id: str) -> Path:
    """Where nio keeps the store of this device (its own naming)."""
    return store_dir / f"{user_id}_{device_id}.db"


class RoomCrypto:
    """Decrypting fetched events and preparing rooms for encrypted sends, for one client."""

    def __init__(self, client: AsyncClient, api: HomeserverApi):
        self._client = client
        self._api = api
        # Rooms the bot has just made: their first send loads the state from the homeserver
        # even when a sync brought the room already, because that sync may have caught the
        # room half-made (before its m.room.encryption or the invite), and nio would then send
        # the first private message in clear, or encrypt it for nobody.
        self._just_made: set[str] = set()

    def made(self, room_id: str) -> None:
        """The bot created ``room_id`` a moment ago (see :meth:`ensure_room`)."""
        if self.active:
            self._just_made.add(room_id)

    @property
    def active(self) -> bool:
        return self._client.olm is not None

    def is_encrypted(self, room_id: str) -> bool:
        room = self._client.rooms.get(room_id)
        return bool(room and room.encrypted) or room_id in self._client.encrypted_rooms

    def decrypt(self, raw: dict[str, Any], room_id: str) -> dict[str, Any] | MegolmEvent:
        """``raw`` in clear: as it is when it was not encrypted, decrypted when we hold its
        room key, else the undecryptable :class:`MegolmEvent` (for the caller to set aside)."""
        if raw.get("type") != "m.room.encrypted" or not self.active:
            return raw
        event = NioEvent.parse_event(raw)
        if not isinstance(event, MegolmEvent):
            return raw  # malformed, or an algorithm we do not speak: read as an OTHER event
        event.room_id = room_id
        try:
            clear = self._client.decrypt_event(event)
        except EncryptionError:
            return event
        source = getattr(clear, "source", None)
        return source if isinstance(source, dict) else event

    async def can_encrypt_for(self, user_id: str) -> bool:
        """Whether a new private room with ``user_id`` should be encrypted: as Element decides
        it, when encryption is on and the person has at least one device with keys (a client
        that cannot decrypt would otherwise be given a room it cannot read)."""
        if not self.active:
            return False
        data = await self._api.request(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {user_id: []}}
        )
        return bool((data.get("device_keys") or {}).get(user_id))

    async def ensure_room(self, room_id: str) -> None:
        """Make nio know ``room_id`` before a send: a room the bot has just created or joined
        is not in a sync yet, and nio refuses to send to a room it does not know when
        encryption is on. Its whole state (members joined and invited, encryption) is loaded
        from the homeserver, so invitees get the room key too."""
        fresh = room_id in self._just_made
        if not self.active or (room_id in self._client.rooms and not fresh):
            return
        state = await self._api.request_list(f"/_matrix/client/v3/rooms/{quote(room_id)}/state")
        room = MatrixRoom(room_id, self._client.user_id)
        for raw in state:
            event = NioEvent.parse_event(raw)
            if isinstance(event, RoomMemberEvent):
                room.handle_membership(event)
            elif raw.get("type") == "m.room.encryption":
                room.encrypted = True
            else:
                room.handle_event(event)
        room.members_synced = True  # the full state names every member
        # A sync may have brought the room meanwhile: keep nio's own then, unless the bot has
        # just made it: this state, read after the creation finished, is the whole of it.
        self._just_made.discard(room_id)
        if room_id in self._client.rooms and not fresh:
            return
        self._client.rooms[room_id] = room
        if room.encrypted and self._client.olm is not None:
            self._client.encrypted_rooms.add(room_id)
            self._client.olm.update_tracked_users(room)
            await self.maintain()

    async def maintain(self) -> None:
        """What nio's ``sync_forever`` does after every sync: send queued to-device messages
        (key shares, key requests), upload one-time keys when they run low, fetch the device
        keys of new members and claim one-time keys for devices we have no session with."""
        client = self._client
        if client.olm is None:
            return
        await self._api.retry("send to-device messages", client.send_to_device_messages)
        if client.should_upload_keys:
            await self._api.retry("upload keys", client.keys_upload)
        if client.should_query_keys:
            await self._api.retry("query keys", client.keys_query)
        if client.should_claim_keys:
            users = client.get_users_for_key_claiming()
            await self._api.retry("claim keys", lambda: client.keys_claim(users))


class KeysError(Exception):
    """Room keys cannot be exported or imported; the message says why and what to do."""


def _device_of(data_dir: Path, user_id: str) -> str:
    """The bot's device: from session.json, else the one store of this account (a bot
    logged in with matrix.access_token keeps no session file)."""
    store_dir = data_dir / STORE_DIR
    try:
        session = json.loads((data_dir / SESSION_FILE).read_text())
    except (OSError, ValueError):
        session = {}
    device = session.get("device_id") if session.get("user_id") == user_id else None
    if isinstance(device, str) and store_file(store_dir, user_id, device).exists():
        return device
    prefix = f"{user_id}_"
    found = [p.stem[len(prefix) :] for p in store_dir.glob(f"{prefix}*.db")]
    if len(found) != 1:
        raise KeysError(
            f"no encryption store of {user_id} in {store_dir}"
            if not found
            else f"{store_dir} holds stores of several devices ({', '.join(found)}): "
            "keep only the current one"
        )
    return found[0]


async def transfer_room_keys(
    data_dir: Path, user_id: str, path: Path, passphrase: str, *, export: bool
) -> None:
    """Export the bot's room keys to ``path`` (encrypted with ``passphrase``, the format
    Element reads and writes) or import them from there into the bot's store. Offline: only
    the store is opened, the homeserver is not asked."""
    problem = e2e_problem()
    if problem:
        raise KeysError(problem)
    device = _device_of(data_dir, user_id)
    config = AsyncClientConfig(
        encryption_enabled=True,
        store_sync_tokens=False,
        pickle_key=pickle_key(installation_key(data_dir)),
    )
    client = AsyncClient(
        "http://localhost", user_id, store_path=str(data_dir / STORE_DIR), config=config
    )
    try:
        client.restore_login(user_id, device, "")
        if export:
            await client.export_keys(str(path), passphrase)
        else:
            await client.import_keys(str(path), passphrase)
    except EncryptionError as exc:
        raise KeysError(f"{path}: {exc} (a wrong passphrase?)") from None
    finally:
        await client.close()
