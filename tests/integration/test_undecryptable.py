"""Undecryptable messages against a real Synapse, with real encryption on both sides.

Until the transport is encrypted (issue 14, branch e2ee) the "bot" here is a raw nio client with
encryption on, driven through :class:`civicbot.transport.undecryptable.Undecryptable` the way
the transport will drive it: each sync's ``MegolmEvent`` sources go to ``hold``, the room keys
among its to-device events to ``retry``, and ``tick`` runs after the batch. The resident
withholds the key by blacklisting the bot's device, and in the first scenario hands it over
later as a plain ``m.room_key`` (what a client does when the key reaches the bot late).

When the transport wiring lands, these tests should drive the real bot (``BotProcess``) with
the resident unchanged: a late key → the command is answered; no key → one notice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    LoginResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomMessageNotice,
    RoomSendResponse,
    SyncResponse,
    ToDeviceMessage,
    ToDeviceResponse,
)
from nio.crypto import ENCRYPTION_ENABLED, OlmDevice

from civicbot.clock import FakeClock
from civicbot.events import Event, Message
from civicbot.storage import Database
from civicbot.testing.synapse import LocalSynapse
from civicbot.transport.undecryptable import NioCrypto, Released, Undecryptable, room_keys

from .conftest import PASSWORD, unique

pytestmark = pytest.mark.skipif(not ENCRYPTION_ENABLED, reason="needs matrix-nio[e2e]")

SYNC_ROUNDS = 30  # long-polls of up to 2 s each before a test gives up waiting


class EncryptedClient:
    """A nio client with encryption on and its own store, like a resident's app or the bot."""

    def __init__(self, client: AsyncClient):
        self.nio = client
        self.token: str | None = None

    @property
    def user_id(self) -> str:
        return str(self.nio.user_id)

    @property
    def device_id(self) -> str:
        return str(self.nio.device_id)

    async def sync(self) -> SyncResponse:
        response = await self.nio.sync(timeout=2000, since=self.token, full_state=True)
        assert isinstance(response, SyncResponse), response
        self.token = response.next_batch
        if self.nio.should_upload_keys:
            await self.nio.keys_upload()
        if self.nio.should_query_keys:
            await self.nio.keys_query()
        return response

    async def device_of(self, other: EncryptedClient) -> OlmDevice:
        """``other``'s device, once this client has its keys."""
        for _ in range(SYNC_ROUNDS):
            devices = self.nio.device_store.active_user_devices(other.user_id)
            found = [d for d in devices if d.id == other.device_id]
            if found:
                return found[0]
            await self.sync()
        raise AssertionError(f"{self.user_id} never saw the keys of {other.device_id}")

    async def send_text(self, room_id: str, body: str) -> str:
        response = await self.nio.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": body, "m.mentions": {}},
            ignore_unverified_devices=True,
        )
        assert isinstance(response, RoomSendResponse), response
        return response.event_id


@pytest.fixture
async def encrypted_clients(
    synapse: LocalSynapse, tmp_path: Path
) -> AsyncIterator[Callable[[str], Awaitable[EncryptedClient]]]:
    made: list[EncryptedClient] = []

    async def make(name: str) -> EncryptedClient:
        user_id = synapse.register(unique(name), PASSWORD)
        store = tmp_path / f"store-{name}"
        store.mkdir()
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
        nio = AsyncClient(synapse.url, user_id, store_path=str(store), config=config)
        login = await nio.login(PASSWORD, device_name=name)
        assert isinstance(login, LoginResponse), login
        client = EncryptedClient(nio)
        made.append(client)
        await client.sync()
        return client

    yield make
    for client in made:
        await client.nio.close()


class DrivenBot:
    """The bot's side as the transport will run it: sync, hold, retry on keys, tick."""

    def __init__(self, client: EncryptedClient, db: Database, clock: FakeClock):
        self.client = client
        self.db = db
        self.clock = clock
        self.notices: list[tuple[str, Message, str]] = []
        self.handled: list[Event] = []
        self.undecryptable = self._holder()

    def _holder(self) -> Undecryptable:
        return Undecryptable(
            self.db, self.client.user_id, NioCrypto(self.client.nio), self._notify, self.clock
        )

    async def _notify(self, room_id: str, message: Message, txn_id: str) -> str:
        self.notices.append((room_id, message, txn_id))
        response = await self.client.nio.room_send(
            room_id,
            "m.room.message",
            message.content(),
            tx_id=txn_id,
            ignore_unverified_devices=True,
        )
        assert isinstance(response, RoomSendResponse), response
        return response.event_id

    async def restart(self) -> list[Released]:
        self.undecryptable = self._holder()
        return await self.undecryptable.start()

    async def sink(self, released: list[Released]) -> None:
        self.handled += [Event.from_raw(r.source, r.room_id) for r in released]
        await self.undecryptable.handled(released)

    async def batch(self) -> SyncResponse:
        """One sync handled as the transport will: hold, retry, tick, then the sink."""
        response = await self.client.sync()
        at_once: list[Released] = []
        for room_id, info in response.rooms.join.items():
            for event in info.timeline.events:
                if isinstance(event, MegolmEvent):
                    now = await self.undecryptable.hold(room_id, event.source)
                    at_once += [now] if now else []
        keys = room_keys(response)
        released = await self.undecryptable.retry(keys) if keys else []
        released += await self.undecryptable.tick()
        await self.sink(released + at_once)
        return response

    async def held(self) -> int:
        return int(await self.db.fetchval("SELECT COUNT(*) FROM core_undecryptable_held"))


async def encrypted_room(resident: EncryptedClient, bot: EncryptedClient) -> str:
    created = await resident.nio.room_create(
        invite=[bot.user_id],
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ],
    )
    assert isinstance(created, RoomCreateResponse), created
    await bot.sync()
    await bot.nio.join(created.room_id)
    for _ in range(SYNC_ROUNDS):
        await resident.sync()
        room = resident.nio.rooms.get(created.room_id)
        if room is not None and bot.user_id in room.users and room.encrypted:
            return created.room_id
    raise AssertionError("the bot never joined the encrypted room")


@pytest.fixture
async def ann_and_bot(
    encrypted_clients: Callable[[str], Awaitable[EncryptedClient]], tmp_path: Path
) -> AsyncIterator[tuple[EncryptedClient, DrivenBot, str]]:
    ann = await encrypted_clients("ann")
    bot_client = await encrypted_clients("civicbot")
    room_id = await encrypted_room(ann, bot_client)
    db = await Database.open(tmp_path / "civicbot.sqlite3")
    bot = DrivenBot(bot_client, db, FakeClock())
    assert await bot.undecryptable.start() == []
    await bot.batch()  # the join and room state
    # The resident's app withholds its room keys from the bot's (unverified) device.
    ann.nio.blacklist_device(await ann.device_of(bot_client))
    yield ann, bot, room_id
    await db.close()


async def hold_until(bot: DrivenBot, count: int) -> None:
    for _ in range(SYNC_ROUNDS):
        await bot.batch()
        if await bot.held() >= count:
            return
    raise AssertionError(f"the bot held {await bot.held()} events, expected {count}")


async def test_a_late_room_key_releases_the_held_messages_and_no_one_is_told(
    ann_and_bot: tuple[EncryptedClient, DrivenBot, str],
) -> None:
    ann, bot, room_id = ann_and_bot
    # Ann's app starts a megolm session for the room; the bot's device is left out.
    await ann.nio.share_group_session(room_id, ignore_unverified_devices=True)
    session = ann.nio.olm.outbound_group_sessions[room_id]
    room_key = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": room_id,
        "session_id": session.id,
        "session_key": session.session_key,  # exported before any message: unlocks them all
    }
    first = await ann.send_text(room_id, "!ping one")
    second = await ann.send_text(room_id, "!ping two")
    await hold_until(bot, 2)
    assert bot.handled == []
    own_requests = bot.client.nio.outgoing_key_requests
    assert list(own_requests) == [session.id]  # asked once for the session, not per message

    # The key reaches the bot late, as a plain m.room_key over Ann's olm session with it.
    device = await ann.device_of(bot.client)
    olm_session = ann.nio.olm.session_store.get(device.curve25519)
    assert olm_session is not None  # made when Ann's app shared the session with the others
    payload = ann.nio.olm._olm_encrypt(olm_session, device, "m.room_key", room_key)
    sent = await ann.nio.to_device(
        ToDeviceMessage("m.room.encrypted", bot.client.user_id, bot.client.device_id, payload)
    )
    assert isinstance(sent, ToDeviceResponse), sent

    for _ in range(SYNC_ROUNDS):
        await bot.batch()
        if len(bot.handled) >= 2:
            break
    assert [(e.event_id, e.body) for e in bot.handled] == [
        (first, "!ping one"),
        (second, "!ping two"),
    ]
    assert await bot.held() == 0
    bot.clock.advance(timedelta(minutes=5))
    await bot.batch()
    assert bot.notices == []
    assert len(bot.handled) == 2


async def test_a_key_that_never_comes_brings_one_notice_even_across_a_restart(
    ann_and_bot: tuple[EncryptedClient, DrivenBot, str],
) -> None:
    ann, bot, room_id = ann_and_bot
    sent = [await ann.send_text(room_id, f"!ping {n}") for n in range(3)]
    await hold_until(bot, 3)
    assert bot.handled == []

    assert await bot.restart() == []  # still no key in the bot's store
    assert await bot.held() == 3
    bot.clock.advance(timedelta(seconds=61))
    await bot.batch()
    assert len(bot.notices) == 1
    assert await bot.held() == 0

    notice: RoomMessageNotice | None = None
    for _ in range(SYNC_ROUNDS):
        response = await ann.sync()
        timeline = response.rooms.join.get(room_id)
        for event in timeline.timeline.events if timeline else []:
            if isinstance(event, RoomMessageNotice) and event.sender == bot.client.user_id:
                notice = event
        if notice is not None:
            break
    assert notice is not None, "Ann never read the bot's notice"
    content: dict[str, Any] = notice.source["content"]
    assert "couldn't read your encrypted message" in notice.body
    assert content["m.mentions"] == {"user_ids": [ann.user_id]}
    assert content["m.relates_to"]["m.in_reply_to"]["event_id"] == sent[0]

    # More from the same phone, still without keys: no second notice.
    await ann.send_text(room_id, "!ping again")
    await hold_until(bot, 1)
    bot.clock.advance(timedelta(seconds=61))
    await bot.batch()
    assert len(bot.notices) == 1
    assert await bot.held() == 0
    assert bot.handled == []
