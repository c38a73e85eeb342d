"""The Matrix transport: the only module (with its helpers in this package) that imports nio.

It owns the sync loop, because nio's ``sync_forever`` dies on the first exception in a callback
and saves the position before callbacks have run. Here the loop hands each whole batch to the
core, and only then stores ``next_batch``; a limited (gappy) timeline is paged back first so no
message is skipped (:mod:`civicbot.transport.sync`). Requests are retried through outages
(:mod:`civicbot.transport.http`); direct chats follow the DM rule of
:mod:`civicbot.transport.direct`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinError,
    LoginResponse,
    RoomSendResponse,
    SyncError,
    SyncResponse,
    UploadResponse,
    WhoamiResponse,
)

from civicbot.config import MatrixSettings
from civicbot.events import Event, EventKind, Message
from civicbot.storage import Database
from civicbot.transport import EventSink, TransportError
from civicbot.transport.direct import DirectChats
from civicbot.transport.http import NETWORK_ERRORS, Backoff, HomeserverApi
from civicbot.transport.sync import FIRST_SYNC_FILTER, SYNC_FILTER, SYNC_TIMEOUT_MS, SyncReader

log = logging.getLogger(__name__)

__all__ = ["Backoff", "MatrixTransport"]


class MatrixTransport:
    """Implements :class:`civicbot.transport.Transport` over matrix-nio."""

    def __init__(
        self, settings: MatrixSettings, data_dir: Path, db: Database, store_session: bool = True
    ):
        self._settings = settings
        self._data_dir = data_dir
        self._db = db
        self._store_session = store_session
        config = AsyncClientConfig(
            # nio would sleep through 429s forever; we bound it and retry ourselves, keeping
            # the transaction id so a retried send is never duplicated.
            max_limit_exceeded=3,
            max_timeouts=1,
            request_timeout=SYNC_TIMEOUT_MS / 1000 + 30,
            encryption_enabled=False,
            store_sync_tokens=False,
        )
        self.client = AsyncClient(settings.homeserver, settings.user_id, config=config)
        self.api = HomeserverApi(self.client)
        self._user_id = settings.user_id
        self._sync = SyncReader(self._user_id, db, self.api)
        self.direct = DirectChats(self.client, self.api, db, self._user_id)
        self._stopping = asyncio.Event()
        self._members_cache: dict[str, list[str]] = {}

    @property
    def user_id(self) -> str:
        return self._user_id

    @user_id.setter
    def user_id(self, value: str) -> None:
        self._user_id = self._sync.user_id = self.direct.user_id = value

    # -- login ---------------------------------------------------------------------------------
    @property
    def _session_file(self) -> Path:
        return self._data_dir / "session.json"

    async def login(self) -> None:
        """Use the configured token, a saved session, or log in once with the password."""
        token = self._settings.access_token.get_secret_value()
        if token:
            self.client.access_token = token
            who = await self.api.retry("whoami", self.client.whoami)
            if not isinstance(who, WhoamiResponse):
                raise TransportError(f"the access token was refused: {who}")
            self.client.restore_login(who.user_id, who.device_id or "", token)
            self.user_id = who.user_id
            return
        saved = self._load_session()
        if saved:
            self.client.restore_login(saved["user_id"], saved["device_id"], saved["access_token"])
            self.user_id = saved["user_id"]
            return
        password = self._settings.password.get_secret_value()
        if not password:
            raise TransportError("set matrix.password or matrix.access_token to log in")
        response = await self.api.retry(
            "login", lambda: self.client.login(password, device_name=self._settings.device_name)
        )
        if not isinstance(response, LoginResponse):
            raise TransportError(f"login failed: {getattr(response, 'message', response)}")
        self.user_id = response.user_id
        self._save_session(response.user_id, response.device_id, response.access_token)
        log.info("logged in as %s (device %s)", response.user_id, response.device_id)

    def _load_session(self) -> dict[str, str] | None:
        try:
            data = json.loads(self._session_file.read_text())
        except (OSError, ValueError):
            return None
        if (
            data.get("homeserver") != self._settings.homeserver
            or data.get("user_id") != self._settings.user_id
        ):
            return None
        return data

    def _save_session(self, user_id: str, device_id: str, token: str) -> None:
        if not self._store_session:
            return
        self._data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._session_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(
                {
                    "homeserver": self._settings.homeserver,
                    "user_id": user_id,
                    "device_id": device_id,
                    "access_token": token,
                },
                handle,
            )
        os.replace(tmp, self._session_file)

    # -- sync loop -----------------------------------------------------------------------------
    async def run(self, sink: EventSink) -> None:
        """Sync until :meth:`stop`. Each batch is handled, then its position saved."""
        token = await self._db.kv_get("sync_token")
        if token is None:
            token = await self._first_sync(sink)
            if token is None:  # asked to stop before the homeserver ever answered
                return
        log.info("listening for events")
        backoff = Backoff()
        while not self._stopping.is_set():
            response = await self._sync_or_stop(token)
            if response is None:
                break
            if isinstance(response, SyncError):
                delay = backoff.next(getattr(response, "retry_after_ms", None))
                if response.status_code == "M_UNKNOWN_TOKEN":
                    await self._login_again()
                    continue
                log.warning("sync failed (%s); retrying in %.1fs", response.message, delay)
                await self._sleep(delay)
                continue
            backoff.reset()
            events = await self._collect(response)
            await sink(events)
            try:
                await self.direct.watch(events, self.send_message, self.leave)
            except TransportError as exc:  # checked again before every private send anyway
                log.warning("could not close a direct chat that stopped being private: %s", exc)
            token = response.next_batch
            await self._sync.save_position(token, events)

    async def _login_again(self) -> None:
        """Our saved session was logged out (or expired): log in afresh with the password."""
        if (
            self._settings.access_token.get_secret_value()
            or not self._settings.password.get_secret_value()
        ):
            raise TransportError(
                "the homeserver no longer accepts our access token", "M_UNKNOWN_TOKEN"
            )
        log.warning("the homeserver logged our session out; logging in again")
        self._session_file.unlink(missing_ok=True)
        await self.login()

    async def _first_sync(self, sink: EventSink) -> str | None:
        """Learn where the rooms are now without answering history; still honour invites."""
        backoff = Backoff()
        while True:
            try:
                response = await self.client.sync(
                    timeout=0, sync_filter=FIRST_SYNC_FILTER, full_state=True
                )
            except NETWORK_ERRORS as exc:
                response = SyncError(str(exc))
            if isinstance(response, SyncResponse):
                break
            delay = backoff.next()
            log.warning("first sync failed (%s); retrying in %.1fs", response.message, delay)
            await self._sleep(delay)
            if self._stopping.is_set():
                return None
        await sink(await self._invite_events(response))
        newest = [
            Event.from_raw(info.timeline.events[-1].source, room_id)
            for room_id, info in response.rooms.join.items()
            if info.timeline.events
        ]
        await self._sync.save_position(response.next_batch, newest)
        log.info("first start: skipped room history, listening from now on")
        return response.next_batch

    async def _sync_or_stop(self, token: str) -> SyncResponse | SyncError | None:
        """One long-poll, abandoned at once when the bot is asked to stop."""
        sync = asyncio.ensure_future(self._sync_once(token))
        stop = asyncio.ensure_future(self._stopping.wait())
        done, _ = await asyncio.wait({sync, stop}, return_when=asyncio.FIRST_COMPLETED)
        if sync not in done:
            sync.cancel()
            await asyncio.gather(sync, return_exceptions=True)
            return None
        stop.cancel()
        return sync.result()

    async def _sync_once(self, token: str) -> SyncResponse | SyncError:
        try:
            return await self.client.sync(
                timeout=SYNC_TIMEOUT_MS, since=token, sync_filter=SYNC_FILTER
            )
        except NETWORK_ERRORS as exc:
            return SyncError(f"homeserver unreachable: {exc or type(exc).__name__}")

    async def _invite_events(self, response: SyncResponse) -> list[Event]:
        found = self._sync.invites(response)
        for invite, _, _ in found:
            self.direct.note_invite(invite)
        return [self._sync.invite_event(*each) for each in found]

    async def _collect(self, response: SyncResponse) -> list[Event]:
        for invite, _, _ in self._sync.invites(response):
            self.direct.note_invite(invite)
        events = await self._sync.collect(response)
        for event in events:
            if event.kind is EventKind.MEMBERSHIP:
                self._members_cache.pop(event.room_id, None)
        for room_id in response.rooms.leave:
            self._members_cache.pop(room_id, None)
            try:
                await self.direct.left(room_id)
            except TransportError as exc:
                log.warning("could not drop %s from the direct chats: %s", room_id, exc)
        return events

    async def stop(self) -> None:
        self.request_stop()

    def request_stop(self) -> None:
        """Finish the batch in hand, save the position, return from :meth:`run`."""
        self._stopping.set()

    async def close(self) -> None:
        await self.client.close()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    # -- Transport -----------------------------------------------------------------------------
    async def send_message(self, room_id: str, message: Message, txn_id: str) -> str:
        return await self.send_event(room_id, "m.room.message", message.content(), txn_id)

    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> str:
        response = await self.api.retry(
            f"send to {room_id}",
            lambda: self.client.room_send(
                room_id, event_type, content, tx_id=txn_id, ignore_unverified_devices=True
            ),
        )
        if isinstance(response, RoomSendResponse):
            return response.event_id
        raise TransportError(
            f"could not send to {room_id}: {response}", getattr(response, "status_code", "") or ""
        )

    async def send_file(
        self, room_id: str, data: bytes, filename: str, content_type: str, txn_id: str
    ) -> str:
        async def upload() -> Any:
            response, _ = await self.client.upload(
                lambda *_: data, content_type=content_type, filename=filename, filesize=len(data)
            )
            return response

        response = await self.api.retry("upload", upload)
        if not isinstance(response, UploadResponse):
            raise TransportError(f"upload failed: {response}")
        content = {
            "msgtype": "m.file",
            "body": filename,
            "filename": filename,
            "url": response.content_uri,
            "m.mentions": {},
            "info": {"mimetype": content_type, "size": len(data)},
        }
        return await self.send_event(room_id, "m.room.message", content, txn_id)

    async def redact(self, room_id: str, event_id: str, reason: str, txn_id: str) -> str:
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/redact/{quote(event_id)}/{quote(txn_id)}"
        data = await self.api.request("PUT", path, {"reason": reason})
        return str(data.get("event_id", ""))

    async def join(self, room_id: str) -> None:
        response = await self.api.retry(f"join {room_id}", lambda: self.client.join(room_id))
        if isinstance(response, JoinError):
            raise TransportError(f"could not join {room_id}: {response.message}")
        await self.direct.joined(room_id)

    async def leave(self, room_id: str) -> None:
        await self.api.retry(f"leave {room_id}", lambda: self.client.room_leave(room_id))
        self._members_cache.pop(room_id, None)

    async def state_event(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        path = (
            f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{quote(event_type)}/"
            f"{quote(state_key)}"
        )
        try:
            return await self.api.request("GET", path)
        except TransportError as exc:
            if exc.errcode == "M_NOT_FOUND":
                return None
            raise

    async def create_event(self, room_id: str) -> dict[str, Any] | None:
        # The state endpoint returns only content, and room v12 creators are the create
        # event's *sender*; the full state list carries whole events.
        events = await self.api.request_list(f"/_matrix/client/v3/rooms/{quote(room_id)}/state")
        for raw in events:
            if raw.get("type") == "m.room.create" and raw.get("state_key") == "":
                return raw
        return None

    async def joined_members(self, room_id: str) -> list[str]:
        cached = self._members_cache.get(room_id)
        if cached is None:
            data = await self.api.request(
                "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/joined_members"
            )
            cached = sorted((data.get("joined") or {}).keys())
            self._members_cache[room_id] = cached
        return cached

    async def joined_rooms(self) -> list[str]:
        data = await self.api.request("GET", "/_matrix/client/v3/joined_rooms")
        rooms = data.get("joined_rooms") or []
        return [r for r in rooms if isinstance(r, str)]

    async def state_events(self, room_id: str, event_type: str) -> dict[str, dict[str, Any]]:
        events = await self.api.request_list(f"/_matrix/client/v3/rooms/{quote(room_id)}/state")
        return {
            raw["state_key"]: raw["content"]
            for raw in events
            if raw.get("type") == event_type
            and isinstance(raw.get("state_key"), str)
            and isinstance(raw.get("content"), dict)
            and raw["content"]
        }

    async def direct_room(self, user_id: str) -> str:
        """A DM with ``user_id`` that passes the rule of :mod:`civicbot.transport.direct`,
        created (and recorded in ``m.direct``) when none does."""
        return await self.direct.direct_room(user_id)

    async def is_direct_with(self, room_id: str, user_id: str) -> bool:
        """Whether ``room_id`` is ``user_id``'s DM with the bot, checked against the homeserver."""
        if len(await self.joined_members(room_id)) > 2:
            return False
        return await self.direct.is_direct_with(room_id, user_id)

    async def known_direct_room(self, user_id: str) -> str | None:
        return await self.direct.known_room(user_id)

    async def forget_direct_room(self, user_id: str) -> int:
        return await self.direct.forget(user_id)

    async def relations(
        self, room_id: str, event_id: str, rel_type: str | None = None
    ) -> list[Event]:
        base = f"/_matrix/client/v1/rooms/{quote(room_id)}/relations/{quote(event_id)}"
        if rel_type:
            base += f"/{quote(rel_type)}"
        found: list[Event] = []
        token: str | None = None
        while True:
            path = f"{base}?limit=1000&dir=f" + (f"&from={quote(token)}" if token else "")
            data = await self.api.request("GET", path)
            found.extend(Event.from_raw(raw, room_id) for raw in data.get("chunk") or [])
            token = data.get("next_batch")
            if not token:
                return found

    async def create_private_room(self, name: str, invite: list[str]) -> str:
        """An invite-only room for the bot and ``invite`` (e.g. two people it introduces):
        not a DM (no ``is_direct``), not in the room directory, history visible to members
        only from their invite."""
        body = {
            "name": name,
            "preset": "private_chat",
            "visibility": "private",
            "invite": list(invite),
            "initial_state": [
                {
                    "type": "m.room.history_visibility",
                    "state_key": "",
                    "content": {"history_visibility": "invited"},
                }
            ],
        }
        data = await self.api.request("POST", "/_matrix/client/v3/createRoom", body)
        room_id = data.get("room_id")
        if not isinstance(room_id, str):
            raise TransportError("could not create a private room")  # no ids: it is logged
        return room_id
