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
import contextlib
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from nio import (
    AsyncClientConfig,
    JoinError,
    MegolmEvent,
    RoomSendResponse,
    SyncError,
    SyncResponse,
    UploadResponse,
)
from nio.crypto import encrypt_attachment
from nio.exceptions import GroupEncryptionError

from civicbot.config import MatrixSettings
from civicbot.core.events import Event, EventKind, Message
from civicbot.scheduling.clock import Clock, SystemClock
from civicbot.storage.database import Database
from civicbot.storage.secret_key import installation_key, keyed_hasher
from civicbot.transport import INTENT_TYPE, EventSink, TransportError
from civicbot.transport.crypto import (
    ENCRYPTION_STATE,
    STORE_DIR,
    e2e_problem,
    pickle_key,
    store_file,
)
from civicbot.transport.direct import DirectChats
from civicbot.transport.encryption import EncryptionDuties
from civicbot.transport.http import NETWORK_ERRORS, Backoff, HomeserverApi
from civicbot.transport.login import DeviceLogin
from civicbot.transport.schemas import install as cache_nio_validators
from civicbot.transport.sync import (
    FIRST_SYNC_FILTER,
    SYNC_FILTER,
    SYNC_TIMEOUT_MS,
    PositionKeeper,
    SyncClient,
    SyncReader,
)
from civicbot.transport.undecryptable import Released

log = logging.getLogger(__name__)
T = TypeVar("T")
JOIN_HISTORY_LIMIT = 20  # member events read back to find when a stay in a room began
ROOM_KEY_TRIES = 4  # sends to an encrypted room whose room key nio failed to make
# The first sync of a start asks with a timeout no start of the last two minutes used (ms):
# a hundred starts would have to come within them for two to share one.
FIRST_SYNC_TIMEOUTS = 100

cache_nio_validators()

__all__ = ["Backoff", "MatrixTransport"]


class MatrixTransport:
    """Implements :class:`civicbot.transport.Transport` over matrix-nio."""

    def __init__(
        self,
        settings: MatrixSettings,
        data_dir: Path,
        db: Database,
        store_session: bool = True,
        clock: Clock | None = None,
    ):
        self._settings = settings
        self._data_dir = data_dir
        self._db = db
        # Encryption needs vodozemac; without it login() says so in one line.
        self.encrypted = settings.encryption and e2e_problem() is None
        config = AsyncClientConfig(
            # nio would sleep through 429s forever; we bound it and retry ourselves, keeping
            # the transaction id so a retried send is never duplicated.
            max_limit_exceeded=3,
            max_timeouts=1,
            request_timeout=SYNC_TIMEOUT_MS / 1000 + 30,
            encryption_enabled=self.encrypted,
            store_sync_tokens=False,
            pickle_key=pickle_key(installation_key(data_dir)) if self.encrypted else "",
        )
        self.client = SyncClient(
            settings.homeserver,
            settings.user_id,
            store_path=str(data_dir / STORE_DIR) if self.encrypted else "",
            config=config,
        )
        self.api = HomeserverApi(self.client)
        self.e2e = EncryptionDuties(
            settings, data_dir, db, self.client, self.api, self.send_message, self.leave,
            self.encrypted, clock or SystemClock(),
        )  # fmt: skip
        self.crypto = self.e2e.crypto
        self.device = DeviceLogin(
            settings, data_dir, self.client, self.api, self.encrypted, store_session
        )
        self._user_id = settings.user_id
        self._synced = False  # no sync since this start has answered yet
        self._first_timeout_ms = 0  # see _fresh_timeout
        self._sync = SyncReader(self._user_id, db, self.api, self.crypto.decrypt)
        keyed = keyed_hasher(installation_key(data_dir))
        self.direct = DirectChats(self.client, self.api, db, self._user_id, self.crypto, keyed)
        self._sync.keyed_hash = keyed
        self._sync.private_room = self._private_room
        self._stopping = asyncio.Event()
        # A new store knows no room as encrypted; until a full-state sync has told it, nio
        # would send in clear to an encrypted room the bot was already in.
        self._full_state_needed = False
        self._members_cache: dict[str, list[str]] = {}

    @property
    def user_id(self) -> str:
        return self._user_id

    @user_id.setter
    def user_id(self, value: str) -> None:
        self._user_id = self._sync.user_id = self.direct.user_id = value
        self.e2e.undecryptable.user_id = value

    # -- login ---------------------------------------------------------------------------------
    async def login(self) -> None:
        """Use the configured token, a saved session, or log in once with the password; with
        encryption, then make sure the device's keys are on the homeserver."""
        if self._settings.encryption and not self.encrypted:
            raise TransportError(e2e_problem() or "encryption is not available")
        store_dir = self.device.store_dir
        if self.encrypted:
            store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            stores = set(store_dir.glob("*.db"))
        user_id = await self._unless_stopping(self.device.log_in())
        if user_id is None:  # SIGTERM while the homeserver was unreachable: nothing to finish
            return
        self.user_id = user_id
        if self.encrypted:
            device_store = store_file(store_dir, self.user_id, self.client.device_id)
            self._full_state_needed = device_store not in stores
            await self.device.upload_device_keys()
            await self.e2e.after_login(self.user_id)

    def _private_room(self, room_id: str) -> bool:
        """A recorded DM, or any room of at most two members (the bot and one person): its
        activity is that person's, so no time of it is kept (see ``SyncReader.save_position``)."""
        if self.direct.is_recorded_direct(room_id):
            return True
        room = self.client.rooms.get(room_id)
        return room is not None and room.member_count <= 2

    # -- sync loop -----------------------------------------------------------------------------
    async def run(self, sink: EventSink) -> None:
        """Sync until :meth:`stop`. Each batch is handed to the core, which queues it per
        room, and the next sync starts at once; a batch's position is saved once it (and every
        batch before it) has been handled (:class:`~civicbot.transport.sync.PositionKeeper`)."""
        try:
            await self.direct.tidy_legacy()
        except TransportError as exc:  # m.direct unreadable now: tidied at the next start
            log.warning("could not read the direct chats to tidy old records: %s", exc)
        await self._fresh_timeout()
        token = await self._db.kv_get("sync_token")
        if token is None:
            token = await self._first_sync(sink)
            if token is None:  # asked to stop before the homeserver ever answered
                return
        # Held when we stopped: their keys may have come. They go to the core with the first
        # batch, not on their own: the core takes its first batch for the backlog, and plugins
        # hear they have caught up once it is handled.
        held = await self.e2e.start()
        log.info("listening for events")
        keeper = PositionKeeper(self._sync)
        try:
            await self._sync_loop(sink, token, keeper, held)
        finally:
            await keeper.finish()

    async def _fresh_timeout(self) -> None:
        """Choose this start's timeout for its first sync: one no earlier start used lately.

        Synapse keeps each sync answer for two minutes (``sync_response_cache_duration``) and
        hands it to any request with the same ``since``, ``timeout`` and filter. A start after
        a crash syncs from the position the start before it synced from; asking with the same
        timeout, it was handed that start's answer, computed before the messages that came
        since, and took it for the whole backlog (plugins then caught up too early: a voter
        whose ballot was replayed just after was asked to vote again). A counter kept across
        starts gives each start's first sync a timeout of its own, a few milliseconds, which
        Synapse must answer afresh."""
        starts = int(await self._db.kv_get("sync_starts") or 0) + 1
        await self._db.kv_set("sync_starts", str(starts))
        self._first_timeout_ms = starts % FIRST_SYNC_TIMEOUTS

    async def _sync_loop(
        self,
        sink: EventSink,
        token: str,
        keeper: PositionKeeper,
        held: list[Released] | None = None,
    ) -> None:
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
            await self.e2e.after_sync(response)
            events = await self._collect(response)
            released = await self.e2e.released(response)
            if held:
                released, held = held + released, None
            # First: a late-read event is older than the batch, and save_position keeps each
            # room's last event as the mark a later gap pages back to.
            events = [Event.from_raw(r.source, r.room_id) for r in released] + events
            self._sync.note(events)
            done = await sink(events)
            try:
                await self.direct.watch(events, self.send_message, self.leave)
            except TransportError as exc:  # checked again before every private send anyway
                log.warning("could not close a direct chat that stopped being private: %s", exc)
            token = response.next_batch
            # The held events are let go only after the core has handled them.
            after = (lambda held=released: self.e2e.handled(held)) if released else None
            keeper.add(done, token, events, after)

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
        self.device.session_file.unlink(missing_ok=True)
        if self.encrypted:
            # nio keeps a loaded store whatever the device: the new device needs its own.
            log.warning("encrypted messages sent before now cannot be read by the new device")
            self.client.store, self.client.olm = None, None
        await self.login()

    async def _first_sync(self, sink: EventSink) -> str | None:
        """Learn where the rooms are now without answering history; still honour invites."""
        backoff = Backoff()
        while True:
            try:
                response = await self.client.sync(
                    timeout=self._first_timeout_ms, sync_filter=FIRST_SYNC_FILTER, full_state=True
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
        self._full_state_needed = False  # this sync was one
        await self.e2e.after_sync(response)
        await (await sink(await self._invite_events(response)))
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
        # The first sync of a start fetches what came while we were away: it must not wait
        # up to 30 s for something new before the plugins hear that they have caught up.
        try:
            response = await self.client.sync(
                timeout=self._first_timeout_ms
                if self._full_state_needed or not self._synced
                else await self.e2e.long_poll_ms(SYNC_TIMEOUT_MS),
                since=token,
                sync_filter=SYNC_FILTER,
                full_state=self._full_state_needed or None,
            )
        except NETWORK_ERRORS as exc:
            return SyncError(f"homeserver unreachable: {exc or type(exc).__name__}")
        if isinstance(response, SyncResponse):
            self._full_state_needed = False
            self._synced = True
        return response

    async def _invite_events(self, response: SyncResponse) -> list[Event]:
        found = self._sync.invites(response)
        for invite, _, _ in found:
            self.direct.note_invite(invite)
        return [self._sync.invite_event(*each) for each in found]

    async def _collect(self, response: SyncResponse) -> list[Event]:
        for invite, _, _ in self._sync.invites(response):
            self.direct.note_invite(invite)
        batch = await self._sync.collect(response)
        events = batch.events
        if batch.undecryptable:
            events = events + await self.e2e.hold(batch.undecryptable)
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

    @property
    def stop_requested(self) -> bool:
        return self._stopping.is_set()

    async def _unless_stopping(self, call: Awaitable[T]) -> T | None:
        """``call``'s result, or None once a stop is asked for first (``call`` is cancelled):
        a login retried through an outage must not outlive a SIGTERM."""
        work = asyncio.ensure_future(call)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if work.done():
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        return None

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
        # nio encrypts for an encrypted room it knows; a brand-new room it must learn first.
        await self.crypto.ensure_room(room_id)
        response = None
        for attempt in range(1, ROOM_KEY_TRIES + 1):
            try:
                response = await self.api.retry(
                    f"send to {room_id}",
                    lambda: self.client.room_send(
                        room_id, event_type, content, tx_id=txn_id, ignore_unverified_devices=True
                    ),
                )
                break
            except (KeyError, GroupEncryptionError) as exc:
                # nio's room key was not made for a room whose members' devices it did not
                # know yet (its share ends in a KeyError): learn them, and share it again.
                if attempt == ROOM_KEY_TRIES:
                    raise TransportError(f"could not encrypt for {room_id}: {exc!r}") from exc
                log.info("the room key for %s was not ready (%r); sharing it again", room_id, exc)
                await self.crypto.maintain()
                await asyncio.sleep(0.2 * attempt)
        if isinstance(response, RoomSendResponse):
            return response.event_id
        raise TransportError(
            f"could not send to {room_id}: {response}", getattr(response, "status_code", "") or ""
        )

    async def send_file(
        self, room_id: str, data: bytes, filename: str, content_type: str, txn_id: str
    ) -> str:
        """Upload and post a file; in an encrypted room the file is encrypted too, and only
        the message (which carries its key) can open it."""
        await self.crypto.ensure_room(room_id)
        encrypted = self.crypto.active and self.crypto.is_encrypted(room_id)
        keys: dict[str, Any] = {}
        payload = data
        if encrypted:
            payload, keys = encrypt_attachment(data)

        async def upload() -> Any:
            response, _ = await self.client.upload(
                lambda *_: payload,
                content_type="application/octet-stream" if encrypted else content_type,
                filename=filename,
                filesize=len(payload),
            )
            return response

        response = await self.api.retry("upload", upload)
        if not isinstance(response, UploadResponse):
            raise TransportError(f"upload failed: {response}")
        content: dict[str, Any] = {
            "msgtype": "m.file",
            "body": filename,
            "filename": filename,
            "m.mentions": {},
            "info": {"mimetype": content_type, "size": len(data)},
        }
        if encrypted:
            content["file"] = {"url": response.content_uri, "mimetype": content_type, **keys}
        else:
            content["url"] = response.content_uri
        return await self.send_event(room_id, "m.room.message", content, txn_id)

    async def redact(self, room_id: str, event_id: str, reason: str, txn_id: str) -> str:
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/redact/{quote(event_id)}/{quote(txn_id)}"
        data = await self.api.request("PUT", path, {"reason": reason})
        return str(data.get("event_id", ""))

    async def join(self, room_id: str) -> None:
        response = await self.api.retry(f"join {room_id}", lambda: self.client.join(room_id))
        if isinstance(response, JoinError):
            raise TransportError(f"could not join {room_id}: {response.message}")
        if not self.encrypted and await self.state_event(room_id, "m.room.encryption"):
            # No welcome: the bot could not read a single command here.
            await self.e2e.refuse_encrypted_room(room_id)
            raise TransportError(
                f"joined {room_id}, but it is encrypted and matrix.encryption is off"
            )
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

    async def joined_since(self, room_id: str, user_id: str) -> int | None:
        # The full state list carries whole events; each member event says in `unsigned` what
        # it replaced, so a display name change is read back to the join that began the stay.
        room = quote(room_id)
        events = await self.api.request_list(f"/_matrix/client/v3/rooms/{room}/state")
        event = next(
            (
                raw
                for raw in events
                if raw.get("type") == "m.room.member" and raw.get("state_key") == user_id
            ),
            None,
        )
        if event is None or (event.get("content") or {}).get("membership") != "join":
            return None
        for _ in range(JOIN_HISTORY_LIMIT):
            # Synapse gives `unsigned.replaces_state` here but no `prev_content`: the event it
            # replaced is read to see whether the stay began with this event or before it.
            replaced = (event.get("unsigned") or {}).get("replaces_state")
            before = None
            if isinstance(replaced, str):
                before = await self.api.request(
                    "GET", f"/_matrix/client/v3/rooms/{room}/event/{quote(replaced)}"
                )
            if before is None or (before.get("content") or {}).get("membership") != "join":
                ts = event.get("origin_server_ts")
                return ts if isinstance(ts, int) else None
            event = before
        return None  # joined long before a run of changes this long: not a fresh stay either

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
        # What the transport keeps of a person: their direct chats, and any message of theirs
        # held unreadable (with the record that they were told about it).
        return await self.direct.forget(user_id) + await self.e2e.undecryptable.forget(user_id)

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
            for raw in data.get("chunk") or []:
                clear = self.crypto.decrypt(raw, room_id)
                if isinstance(clear, MegolmEvent):
                    log.warning("a relation of an event in %s could not be decrypted", room_id)
                else:
                    found.append(Event.from_raw(clear, room_id))
            token = data.get("next_batch")
            if not token:
                return found

    async def create_private_room(self, name: str, invite: list[str], intent: str = "") -> str:
        """An invite-only room for the bot and ``invite`` (e.g. two people it introduces):
        not a DM (no ``is_direct``), not in the room directory, history visible to members
        only from their invite."""
        initial_state: list[dict[str, Any]] = [
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "invited"},
            }
        ]
        if intent:
            initial_state.append({"type": INTENT_TYPE, "state_key": "", "content": {"key": intent}})
        if invite and all([await self.crypto.can_encrypt_for(person) for person in invite]):
            initial_state.append(dict(ENCRYPTION_STATE))
        body = {
            "name": name,
            "preset": "private_chat",
            "visibility": "private",
            "invite": list(invite),
            "initial_state": initial_state,
        }
        data = await self.api.request("POST", "/_matrix/client/v3/createRoom", body)
        room_id = data.get("room_id")
        if not isinstance(room_id, str):
            raise TransportError("could not create a private room")  # no ids: it is logged
        self.crypto.made(room_id)
        return room_id
