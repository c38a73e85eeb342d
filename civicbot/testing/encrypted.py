"""A resident with end-to-end encryption: a real matrix-nio client with its own key store.

The raw-HTTP :class:`~civicbot.testing.client.Resident` cannot read an encrypted room; this
one does what Element does there: it encrypts what it sends (sharing its room key with every
device in the room, verified or not), decrypts what it receives, and opens encrypted files.
Events are handed to tests as the decrypted JSON, with ``"encrypted": True`` when they
arrived as ``m.room.encrypted``.

    ann = await EncryptedResident.login(hs.url, "@ann:localhost", "pw", tmp_path / "ann")
    room = await ann.create_room(name="Street", invite=[bot_id])
    await ann.send_text(room, "!ping")
    reply = await ann.wait_for(room, lambda e: e["sender"] == bot_id)
"""

from __future__ import annotations

import os
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    LoginResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
)
from nio.crypto import decrypt_attachment
from nio.exceptions import EncryptionError

from civicbot.testing.matrix_user import MAX_POLL_S, MatrixUser, _q

Event = dict[str, Any]
MEGOLM = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


class EncryptedResident:
    """One Matrix user on a nio client with encryption; :attr:`http` speaks raw HTTP for
    what a test must see undecrypted (the events as the homeserver stores them)."""

    def __init__(self, client: AsyncClient, http: MatrixUser):
        self.client = client
        self.http = http
        self.user_id = client.user_id
        self._timeline: dict[str, list[Event]] = defaultdict(list)
        self._pending: list[MegolmEvent] = []  # waiting for their room key
        self._since: str | None = None
        self._mark_ms = 0
        self._mark_index: dict[str, int] = {}
        self.sync_before_send = True

    @classmethod
    async def login(
        cls, homeserver: str, user_id: str, password: str, store_dir: Path
    ) -> EncryptedResident:
        """Log in as a new device whose keys live in ``store_dir``, and publish its keys."""
        os.makedirs(store_dir, exist_ok=True)
        config = AsyncClientConfig(
            encryption_enabled=True, store_sync_tokens=False, pickle_key="test resident"
        )
        client = AsyncClient(homeserver, user_id, store_path=str(store_dir), config=config)
        response = await client.login(password, device_name="civicbot encrypted resident")
        if not isinstance(response, LoginResponse):
            await client.close()
            raise RuntimeError(f"login failed: {response}")
        resident = cls(client, MatrixUser(homeserver, response.user_id, response.access_token))
        await resident._maintain()
        await resident._sync(0)
        resident.mark()
        return resident

    async def close(self) -> None:
        await self.client.close()
        await self.http.close()

    # ------------------------------------------------------------------- rooms
    async def create_room(
        self, name: str | None = None, invite: Iterable[str] = (), is_direct: bool = False
    ) -> str:
        """An encrypted private room (as Element makes one); returns its id."""
        response = await self.client.room_create(
            name=name,
            invite=list(invite),
            is_direct=is_direct,
            preset=RoomPreset.private_chat,
            initial_state=[dict(MEGOLM)],
        )
        if not isinstance(response, RoomCreateResponse):
            raise RuntimeError(f"could not create a room: {response}")
        while response.room_id not in self.client.rooms:
            await self._sync(1)
        return response.room_id

    async def join(self, room_id: str) -> None:
        await self.client.join(room_id)
        while room_id not in self.client.rooms:
            await self._sync(1)

    async def wait_for_invite_from(self, inviter: str, timeout: float = 20) -> str:  # noqa: ASYNC109
        """The id of a room ``inviter`` has invited us to."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for room_id, room in self.client.invited_rooms.items():
                if room.inviter == inviter:
                    return room_id
            await self._sync(min(MAX_POLL_S, max(deadline - time.monotonic(), 0)))
        raise TimeoutError(f"{self.user_id}: no invite from {inviter} within {timeout}s")

    # ------------------------------------------------------------------ events
    async def send_text(self, room_id: str, body: str, reply_to: str | None = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": body, "m.mentions": {}}
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return await self.send_event(room_id, "m.room.message", content)

    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str | None = None
    ) -> str:
        """Send an event, encrypted in an encrypted room (nio sends reactions in clear).
        A sync first, as a client that is always syncing knows of new devices by then
        (unless :attr:`sync_before_send` is off, as the latency bench has it)."""
        if self.sync_before_send:
            await self._sync(0)
        else:
            await self._maintain()
        self._share_with_new_devices(room_id)
        response = await self.client.room_send(
            room_id, event_type, content, tx_id=txn_id, ignore_unverified_devices=True
        )
        if not isinstance(response, RoomSendResponse):
            raise RuntimeError(f"could not send: {response}")
        return response.event_id

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self.send_event(room_id, "m.reaction", content)

    async def react_encrypted(self, room_id: str, event_id: str, key: str) -> str:
        """A reaction encrypted as Element sends one (nio sends reactions in clear), with the
        relation repeated outside the ciphertext so the server can aggregate it."""
        await self._sync(0)
        self._share_with_new_devices(room_id)
        olm = self.client.olm
        assert olm is not None
        if olm.should_share_group_session(room_id):
            await self.client.share_group_session(room_id, ignore_unverified_devices=True)
        relation = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
        content = olm.group_encrypt(
            room_id, {"type": "m.reaction", "content": {"m.relates_to": relation}}
        )
        content["m.relates_to"] = relation
        path = (
            f"/_matrix/client/v3/rooms/{_q(room_id)}/send/m.room.encrypted/{secrets.token_hex(8)}"
        )
        data = await self.http._request("PUT", path, content)
        return str(data["event_id"])

    async def download_file(self, content: dict[str, Any]) -> bytes:
        """The bytes of an ``m.file`` message, decrypted with the keys it carries."""
        file = content.get("file")
        if not isinstance(file, dict):
            return await self.http.download(str(content["url"]))
        ciphertext = await self.http.download(str(file["url"]))
        return decrypt_attachment(
            ciphertext, file["key"]["k"], file["hashes"]["sha256"], file["iv"]
        )

    async def stored_events(self, room_id: str, limit: int = 100) -> list[Event]:
        """The latest events of the room as the homeserver stores them (not decrypted)."""
        resp = await self.http._request(
            "GET",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/messages",
            params={"dir": "b", "limit": str(limit)},
        )
        return list(resp.get("chunk", []))

    # -------------------------------------------------------------------- sync
    def mark(self) -> None:
        """Start a new waiting window: :meth:`wait_for` then ignores earlier events."""
        self._mark_ms = int(time.time() * 1000)
        self._mark_index = {room: len(events) for room, events in self._timeline.items()}

    async def wait_for(
        self,
        room_id: str,
        predicate: Callable[[Event], bool],
        timeout: float = 20,  # noqa: ASYNC109 - a per-call deadline reads best in tests
    ) -> Event:
        """The first (decrypted) event after the mark for which ``predicate`` is true."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.since_mark(room_id):
                if predicate(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                shown = [
                    f"{e.get('type')} from {e.get('sender')}: "
                    f"{str((e.get('content') or {}).get('body', ''))[:60]!r}"
                    for e in self.since_mark(room_id)[-8:]
                ]
                raise TimeoutError(
                    f"{self.user_id}: no matching event in {room_id} within {timeout}s; seen: "
                    f"{shown}; undecryptable: {len(self._pending)}"
                )
            await self._sync(min(remaining, MAX_POLL_S))

    def since_mark(self, room_id: str) -> list[Event]:
        events = self._timeline.get(room_id, [])
        start = self._mark_index.get(room_id, 0)
        return [e for e in events[start:] if e.get("origin_server_ts", 0) >= self._mark_ms]

    async def _sync(self, timeout_s: float) -> None:
        response = await self.client.sync(
            timeout=int(timeout_s * 1000), since=self._since, full_state=self._since is None
        )
        if not isinstance(response, SyncResponse):
            raise RuntimeError(f"sync failed: {response}")
        self._since = response.next_batch
        await self._maintain()
        for room_id, info in response.rooms.join.items():
            for event in info.timeline.events:
                if isinstance(event, MegolmEvent):
                    event.room_id = room_id
                    self._pending.append(event)
                else:
                    self._keep(room_id, event.source, getattr(event, "decrypted", False))
        self._retry_pending()

    def _retry_pending(self) -> None:
        """Events whose room key came after them (it often does): decrypted now, in order."""
        still = []
        for event in self._pending:
            try:
                clear = self.client.decrypt_event(event)
            except EncryptionError:
                still.append(event)
                continue
            self._keep(event.room_id, clear.source, True)
        self._pending = still

    def _keep(self, room_id: str, source: dict[str, Any], encrypted: bool) -> None:
        event = dict(source)
        event.setdefault("room_id", room_id)
        event["encrypted"] = encrypted
        self._timeline[room_id].append(event)

    def _share_with_new_devices(self, room_id: str) -> None:
        """Element gives its room key to a member's new device (a bot that lost its store
        comes back as one); nio does not, so the session is renewed: a new one goes to all."""
        olm, room = self.client.olm, self.client.rooms.get(room_id)
        session = olm.outbound_group_sessions.get(room_id) if olm and room else None
        if olm is None or room is None or session is None:
            return
        devices = {
            (user, device.id)
            for user in room.users
            for device in olm.device_store.active_user_devices(user)
        }
        if devices - session.users_shared_with - session.users_ignored:
            self.client.invalidate_outbound_session(room_id)

    async def _maintain(self) -> None:
        """What nio's sync_forever does between syncs: share and fetch keys."""
        client = self.client
        await client.send_to_device_messages()
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
