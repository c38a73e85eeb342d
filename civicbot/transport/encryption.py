"""What the Matrix transport does for encryption around each sync, in one place.

With encryption on: sign each new device with the account's cross-signing keys
(:mod:`civicbot.transport.crosssigning`), keep nio's keys up to date after every sync, and hold the
messages we cannot read yet until their key comes (:mod:`civicbot.transport.undecryptable`),
cutting the long-poll short so their senders are told on time. With encryption off: say once in
an encrypted room that the bot can't read it, then leave or stay quiet.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from nio import AsyncClient, MegolmEvent, SyncResponse

from civicbot.config import MatrixSettings
from civicbot.core.events import Event, Message
from civicbot.scheduling.clock import Clock
from civicbot.storage.database import Database
from civicbot.transport import TransportError
from civicbot.transport.crosssigning import CROSS_SIGNING_FILE, ensure_cross_signed
from civicbot.transport.crypto import RoomCrypto
from civicbot.transport.http import HomeserverApi
from civicbot.transport.undecryptable import NioCrypto, Released, Undecryptable, room_keys

log = logging.getLogger(__name__)

MIN_POLL_MS = 1_000

SendMessage = Callable[[str, Message, str], Awaitable[str]]


class EncryptionDuties:
    """The transport's encryption chores; ``enabled`` is whether it encrypts at all."""

    def __init__(
        self,
        settings: MatrixSettings,
        data_dir: Path,
        db: Database,
        client: AsyncClient,
        api: HomeserverApi,
        send_message: SendMessage,
        leave: Callable[[str], Awaitable[None]],
        enabled: bool,
        clock: Clock,
    ):
        self.enabled = enabled
        self._settings = settings
        self._data_dir = data_dir
        self._db = db
        self._client = client
        self._api = api
        self._send_message = send_message
        self._leave = leave
        self.crypto = RoomCrypto(client, api)
        self.undecryptable = Undecryptable(
            db,
            settings.user_id,
            NioCrypto(client),
            send_message,
            clock,
            timeout=settings.undecryptable_timeout,
        )

    async def after_login(self, user_id: str) -> None:
        """Runs after every login (once per start, and again if the homeserver logged us out),
        when the device and its keys are on the homeserver: sign the device with the
        account's cross-signing keys (a new device too). Never raises: an unsigned bot still
        works, and the log says why it is unsigned."""
        assert self._client.olm is not None
        keys = self._client.olm.account.identity_keys
        device = self._client.device_id
        log.info("encryption on: device %s, ed25519 key %s", device, keys["ed25519"])
        await ensure_cross_signed(
            self._api,
            user_id,
            device,
            device_key=keys["ed25519"],
            password=self._settings.password.get_secret_value() or None,
            key_file=self._data_dir / CROSS_SIGNING_FILE,
            replace_server_keys=self._settings.cross_signing_reset,
        )

    async def start(self) -> list[Released]:
        """What was held when we stopped, readable now if its key came meanwhile."""
        return await self.undecryptable.start() if self.enabled else []

    async def after_sync(self, response: SyncResponse) -> None:
        """Key upkeep after every sync (nio has decrypted the timeline and taken in the room
        keys sent to us by then), and, with encryption off, the encrypted rooms."""
        if self.enabled:
            try:
                await self.crypto.maintain()
            except TransportError as exc:  # tried again after the next sync
                log.warning("encryption upkeep failed: %s", exc)
        else:
            await self._refuse_encrypted_rooms(response)

    async def hold(self, events: list[MegolmEvent]) -> list[Event]:
        """Encrypted events of this batch nio holds no key for: kept (in the database, before
        the position is saved) until their key comes or the sender has been told. Returns
        those readable by now."""
        if not self.enabled:
            # With encryption off, a room that chose to keep the bot says this all day.
            log.debug("skipped %d encrypted events", len(events))
            return []
        readable = []
        for event in events:
            now = await self.undecryptable.hold(event.room_id, event.source)
            if now is not None:
                readable.append(Event.from_raw(now.source, now.room_id))
        return readable

    async def released(self, response: SyncResponse) -> list[Released]:
        """Held events this sync's room keys unlock, then those past their timeout (their
        senders told once); hand them to the core, then call :meth:`handled`."""
        if not self.enabled:
            return []
        keys = room_keys(response)
        released = await self.undecryptable.retry(keys) if keys else []
        return released + await self.undecryptable.tick()

    async def handled(self, released: list[Released]) -> None:
        if released:
            await self.undecryptable.handled(released)

    async def long_poll_ms(self, default_ms: int) -> int:
        """The long-poll, cut short when a held event times out sooner: the sender is told at
        the timeout, not up to a long-poll later. Never under a second, so a notice the
        homeserver will not take yet is not retried in a tight loop."""
        due = await self.undecryptable.seconds_to_tick() if self.enabled else None
        if due is None:
            return default_ms
        return min(default_ms, max(MIN_POLL_MS, int(due * 1000)))

    async def _refuse_encrypted_rooms(self, response: SyncResponse) -> None:
        """Encryption is off: in an encrypted room the bot would answer nothing anyone said
        (a room may be encrypted after the bot joined)."""
        for room_id in response.rooms.join:
            room = self._client.rooms.get(room_id)
            if room is not None and room.encrypted:
                await self.refuse_encrypted_room(room_id)

    async def refuse_encrypted_room(self, room_id: str) -> None:
        """Say once (plain text, a stable transaction id, remembered) that the bot can't read
        this encrypted room, then leave it or stay quiet as
        ``matrix.unencrypted_rooms_policy`` says."""
        key = f"e2e_refused:{room_id}"
        if await self._db.kv_get(key) is not None:
            return
        text = (
            "This room is encrypted and my encryption is switched off, so I can't read what is "
            "said here. Ask whoever runs me to set matrix.encryption = true in my config."
        )
        try:
            await self._send_message(room_id, Message(text), f"cbnoe2e.{room_id}")
        except TransportError as exc:
            log.warning("could not explain encryption in %s: %s", room_id, exc)
            return
        await self._db.kv_set(key, "1")
        log.warning("%s is encrypted and matrix.encryption is off", room_id)
        if self._settings.unencrypted_rooms_policy == "leave":
            await self._leave(room_id)
