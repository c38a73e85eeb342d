"""The Matrix transport: the only module that imports matrix-nio.

It owns the sync loop, because nio's ``sync_forever`` dies on the first exception in a callback
and saves the position before callbacks have run. Here the loop hands each whole batch to the
core, and only then stores ``next_batch``; a limited (gappy) timeline is paged back first so no
message is skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import ClientError
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinError,
    LoginResponse,
    RoomCreateError,
    RoomPreset,
    RoomSendResponse,
    SyncError,
    SyncResponse,
    UploadResponse,
    WhoamiResponse,
)
from nio.exceptions import LocalProtocolError

from civicbot.config import MatrixSettings
from civicbot.events import Event, EventKind, Message
from civicbot.storage import Database
from civicbot.transport import EventSink, TransportError

log = logging.getLogger(__name__)
T = TypeVar("T")

SYNC_TIMEOUT_MS = 30_000
GAP_PAGE_LIMIT = 100
GAP_MAX_EVENTS = 5_000
MAX_BACKOFF_S = 30.0
SEND_DEADLINE_S = 600.0
LATE_EVENT_ALLOWANCE_MS = 10 * 60 * 1000  # keep retrying a send through an outage this long

# A filter that keeps everything a handler may need and drops what the bot never reads; a
# generous timeline limit makes gaps (limited=True) rare, and paging fills those that remain.
SYNC_FILTER: dict[str, Any] = {
    "presence": {"types": []},
    "account_data": {"types": []},
    "room": {
        "timeline": {"limit": 100},
        "state": {"lazy_load_members": True},
        "ephemeral": {"types": []},
        "account_data": {"types": []},
    },
}
FIRST_SYNC_FILTER: dict[str, Any] = {
    **SYNC_FILTER,
    "room": {**SYNC_FILTER["room"], "timeline": {"limit": 1}},
}
NETWORK_ERRORS = (OSError, ClientError, asyncio.TimeoutError, LocalProtocolError)


class Backoff:
    """Capped exponential backoff with jitter: 0.5 s, 1 s, 2 s … up to ``cap``."""

    def __init__(self, start: float = 0.5, cap: float = MAX_BACKOFF_S):
        self._start, self._cap, self._next = start, cap, start

    def reset(self) -> None:
        self._next = self._start

    def next(self, hint_ms: int | None = None) -> float:
        if hint_ms:
            return min(hint_ms / 1000, self._cap * 4)
        delay = self._next
        self._next = min(self._next * 2, self._cap)
        return delay * random.uniform(0.8, 1.2)


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
        self.user_id = settings.user_id
        self._stopping = asyncio.Event()
        self._members_cache: dict[str, list[str]] = {}

    # -- login ---------------------------------------------------------------------------------
    @property
    def _session_file(self) -> Path:
        return self._data_dir / "session.json"

    async def login(self) -> None:
        """Use the configured token, a saved session, or log in once with the password."""
        token = self._settings.access_token.get_secret_value()
        if token:
            self.client.access_token = token
            who = await self._retry("whoami", self.client.whoami)
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
        response = await self._retry(
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
            token = response.next_batch
            await self._save_position(token, events)

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
        await sink(self._invites(response))
        newest = [
            Event.from_raw(info.timeline.events[-1].source, room_id)
            for room_id, info in response.rooms.join.items()
            if info.timeline.events
        ]
        await self._save_position(response.next_batch, newest)
        log.info("first start: skipped room history, listening from now on")
        return response.next_batch

    async def _save_position(self, token: str, events: list[Event]) -> None:
        """Store where to sync from next and, per room, the newest event seen: the mark a
        later gap pages back to. One statement, as it runs after every sync."""
        rows = [("sync_token", token)]
        newest: dict[str, Event] = {}
        for event in events:
            if event.event_id:
                newest[event.room_id] = event
        rows += [(f"room_last:{room}", f"{e.ts}|{e.event_id}") for room, e in newest.items()]
        marks = ", ".join("(?, ?)" for _ in rows)
        await self._db.execute(
            f"INSERT INTO core_kv (key, value) VALUES {marks} "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [value for row in rows for value in row],
        )

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

    async def _collect(self, response: SyncResponse) -> list[Event]:
        events = self._invites(response)
        for room_id, info in response.rooms.join.items():
            raws = [e.source for e in info.timeline.events if getattr(e, "source", None)]
            joined_at = self._own_join(raws)
            if joined_at is not None:
                # Just joined: what came before our join is the room's history, not for us.
                raws = raws[joined_at:]
            elif info.timeline.limited and info.timeline.prev_batch:
                raws = await self._fill_gap(room_id, info.timeline.prev_batch) + raws
            events.extend(Event.from_raw(raw, room_id) for raw in raws)
            if any(raw.get("type") == "m.room.member" for raw in raws):
                self._members_cache.pop(room_id, None)
        for room_id in response.rooms.leave:
            self._members_cache.pop(room_id, None)
        return events

    def _own_join(self, raws: list[dict[str, Any]]) -> int | None:
        """Index of the bot's own join in a timeline, if it joined during this batch."""
        for index, raw in enumerate(raws):
            if (
                raw.get("type") == "m.room.member"
                and raw.get("state_key") == self.user_id
                and (raw.get("content") or {}).get("membership") == "join"
            ):
                prev = ((raw.get("unsigned") or {}).get("prev_content") or {}).get("membership")
                if prev != "join":
                    return index
        return None

    def _invites(self, response: SyncResponse) -> list[Event]:
        """Invites addressed to the bot itself (state_key is our id), as INVITE events."""
        found = []
        for room_id, info in response.rooms.invite.items():
            for state in info.invite_state:
                raw = getattr(state, "source", None) or {}
                # nio keeps invite_state content on the parsed event, not in .source
                content = raw.get("content") or getattr(state, "content", None) or {}
                if (
                    raw.get("type") == "m.room.member"
                    and raw.get("state_key") == self.user_id
                    and content.get("membership") == "invite"
                ):
                    found.append(
                        Event(
                            event_id="",
                            room_id=room_id,
                            sender=raw.get("sender", ""),
                            kind=EventKind.INVITE,
                            type="m.room.member",
                            ts=int(raw.get("origin_server_ts") or 0),
                            content=content,
                            state_key=self.user_id,
                        )
                    )
        return found

    async def _fill_gap(self, room_id: str, prev_batch: str) -> list[dict[str, Any]]:
        """Page back over a gap to the newest event we saw in this room before it (or one we
        handled, or our own join), so messages sent while we were away are not skipped.

        Federated events can arrive late with older timestamps, so time alone is only a
        fallback: we stop on time when we pass well below the last event we saw."""
        mark = await self._db.kv_get(f"room_last:{room_id}") or "0|"
        last_ts_text, _, last_id = mark.partition("|")
        floor_ts = int(last_ts_text) - LATE_EVENT_ALLOWANCE_MS
        older: list[dict[str, Any]] = []
        token: str | None = prev_batch
        while token and len(older) < GAP_MAX_EVENTS:
            path = (
                f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b"
                f"&limit={GAP_PAGE_LIMIT}&from={quote(token)}"
            )
            page = await self._request("GET", path)
            chunk = page.get("chunk") or []
            reached = False
            for raw in chunk:
                if (
                    raw.get("event_id") == last_id
                    or int(raw.get("origin_server_ts") or 0) < floor_ts
                    or self._own_join([raw]) is not None
                    or await self._known(raw.get("event_id", ""))
                ):
                    reached = True
                    break
                older.append(raw)
            if reached or not chunk:
                break
            token = page.get("end")
        if len(older) >= GAP_MAX_EVENTS:
            log.warning(
                "a gap in %s is longer than %d events; older messages were not read",
                room_id,
                GAP_MAX_EVENTS,
            )
        log.info("filled a gap of %d events in %s", len(older), room_id)
        return list(reversed(older))

    async def _known(self, event_id: str) -> bool:
        return bool(
            await self._db.fetchval("SELECT 1 FROM core_handled WHERE event_id = ?", (event_id,))
        )

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

    # -- requests with retries ----------------------------------------------------------------
    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Retry through outages and rate limits (honouring retry-after) up to a deadline."""
        backoff = Backoff()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SEND_DEADLINE_S
        while True:
            try:
                result = await call()
            except NETWORK_ERRORS as exc:
                hint, reason = None, f"unreachable ({exc or type(exc).__name__})"
            else:
                code = getattr(result, "status_code", None)
                status = getattr(getattr(result, "transport_response", None), "status", 200)
                if code != "M_LIMIT_EXCEEDED" and status != 429 and status < 500:
                    return result
                hint, reason = getattr(result, "retry_after_ms", None), f"{code or status}"
            if loop.time() > deadline:
                raise TransportError(f"{what}: gave up after {SEND_DEADLINE_S:.0f}s ({reason})")
            delay = backoff.next(hint)
            log.warning("%s: %s; retrying in %.1fs", what, reason, delay)
            await asyncio.sleep(delay)

    async def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A raw client-server API call, retried like sends; raises on a refusal."""
        data = await self._request_any(method, path, body)
        return data if isinstance(data, dict) else {}

    async def _request_list(self, path: str) -> list[dict[str, Any]]:
        data = await self._request_any("GET", path)
        return data if isinstance(data, list) else []

    async def _request_any(self, method: str, path: str, body: Any = None) -> Any:

        async def call() -> Any:
            payload = json.dumps(body) if body is not None else None
            headers = {
                "Authorization": f"Bearer {self.client.access_token}",
                "Content-Type": "application/json",
            }
            response = await self.client.send(method, path, payload, headers)
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = {}
            return _Raw(response.status, data)

        raw = await self._retry(f"{method} {path.split('?')[0]}", call)
        if raw.status >= 400:
            error = raw.data if isinstance(raw.data, dict) else {}
            raise TransportError(error.get("error", f"HTTP {raw.status}"), error.get("errcode", ""))
        return raw.data

    # -- Transport -----------------------------------------------------------------------------
    async def send_message(self, room_id: str, message: Message, txn_id: str) -> str:
        return await self.send_event(room_id, "m.room.message", message.content(), txn_id)

    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> str:
        response = await self._retry(
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

        response = await self._retry("upload", upload)
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
        data = await self._request("PUT", path, {"reason": reason})
        return str(data.get("event_id", ""))

    async def join(self, room_id: str) -> None:
        response = await self._retry(f"join {room_id}", lambda: self.client.join(room_id))
        if isinstance(response, JoinError):
            raise TransportError(f"could not join {room_id}: {response.message}")

    async def leave(self, room_id: str) -> None:
        await self._retry(f"leave {room_id}", lambda: self.client.room_leave(room_id))

    async def state_event(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        path = (
            f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{quote(event_type)}/"
            f"{quote(state_key)}"
        )
        try:
            return await self._request("GET", path)
        except TransportError as exc:
            if exc.errcode == "M_NOT_FOUND":
                return None
            raise

    async def create_event(self, room_id: str) -> dict[str, Any] | None:
        # The state endpoint returns only content, and room v12 creators are the create
        # event's *sender*; the full state list carries whole events.
        events = await self._request_list(f"/_matrix/client/v3/rooms/{quote(room_id)}/state")
        for raw in events:
            if raw.get("type") == "m.room.create" and raw.get("state_key") == "":
                return raw
        return None

    async def joined_members(self, room_id: str) -> list[str]:
        cached = self._members_cache.get(room_id)
        if cached is None:
            data = await self._request(
                "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/joined_members"
            )
            cached = sorted((data.get("joined") or {}).keys())
            self._members_cache[room_id] = cached
        return cached

    async def direct_room(self, user_id: str) -> str:
        """A room with exactly the bot and ``user_id`` in it (joined or invited), checked
        against the homeserver every time: a private message must never reach a group."""
        key = f"dm:{user_id}"
        saved = await self._db.kv_get(key)
        # nio's member lists are partial under lazy loading, so they only shortlist candidates.
        shortlist = [
            room_id
            for room_id, room in self.client.rooms.items()
            if user_id in room.users and room.joined_count + room.invited_count <= 2
        ]
        for candidate in ([saved] if saved else []) + shortlist:
            if await self._only_members(candidate, {self.user_id, user_id}):
                if candidate != saved:
                    await self._db.kv_set(key, candidate)
                return candidate
        response = await self._retry(
            "create direct room",
            lambda: self.client.room_create(
                is_direct=True, invite=[user_id], preset=RoomPreset.trusted_private_chat
            ),
        )
        if isinstance(response, RoomCreateError):
            # No user id in the message: it reaches the logs.
            raise TransportError(f"could not open a direct chat: {response.message}")
        await self._db.kv_set(key, response.room_id)
        return response.room_id

    async def _only_members(self, room_id: str, expected: set[str]) -> bool:
        """True when the joined and invited members of ``room_id`` are exactly ``expected``."""
        path = (
            f"/_matrix/client/v3/rooms/{quote(room_id)}/members"
            "?not_membership=leave&not_membership=ban"
        )
        try:
            data = await self._request("GET", path)
        except TransportError:
            return False
        present = {
            raw.get("state_key")
            for raw in data.get("chunk") or []
            if (raw.get("content") or {}).get("membership") in ("join", "invite")
        }
        return present == expected

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
            data = await self._request("GET", path)
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
        data = await self._request("POST", "/_matrix/client/v3/createRoom", body)
        room_id = data.get("room_id")
        if not isinstance(room_id, str):
            raise TransportError("could not create a private room")  # no ids: it is logged
        return room_id


class _Raw:
    """A raw response shaped like nio's, for :meth:`MatrixTransport._retry`."""

    def __init__(self, status: int, data: Any):
        self.status = status
        self.data = data
        error = data if isinstance(data, dict) and status >= 400 else {}
        self.status_code = error.get("errcode")
        self.retry_after_ms = error.get("retry_after_ms")
        self.transport_response = self  # _retry reads .transport_response.status
