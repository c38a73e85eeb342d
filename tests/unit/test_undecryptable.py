"""Undecryptable events: held, released when their key comes, one notice per device after the
timeout, surviving a restart. The encryption library is a fake; the database is real."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from nio import ForwardedRoomKeyEvent, RoomKeyEvent, UnknownToDeviceEvent

from civicbot.core.events import Event, EventKind, Message
from civicbot.scheduling.clock import FakeClock
from civicbot.storage.database import Database
from civicbot.transport import TransportError
from civicbot.transport.undecryptable import Undecryptable, notice_txn_id, room_keys

BOT = "@civicbot:hs"
ANN = "@ann:hs"
BEN = "@ben:hs"
ROOM = "!room:hs"
OTHER_ROOM = "!other:hs"
SECRET = "the-secret-body"


class FakeCrypto:
    """Decrypts an event once its (room, session) key has 'arrived'."""

    def __init__(self) -> None:
        self.keys: set[tuple[str, str]] = set()
        self.requests: list[tuple[str, str]] = []

    def decrypt(self, room_id: str, raw: dict[str, Any]) -> dict[str, Any] | None:
        if (room_id, raw["content"]["session_id"]) not in self.keys:
            return None
        return {
            "type": "m.room.message",
            "event_id": raw["event_id"],
            "sender": raw["sender"],
            "origin_server_ts": raw["origin_server_ts"],
            "content": {"msgtype": "m.text", "body": f"{SECRET} {raw['event_id']}"},
        }

    async def request_key(self, room_id: str, raw: dict[str, Any]) -> bool:
        self.requests.append((room_id, raw["content"]["session_id"]))
        return True


class Sent:
    def __init__(self) -> None:
        self.notices: list[tuple[str, Message, str]] = []
        self.fail: list[TransportError] = []

    async def __call__(self, room_id: str, message: Message, txn_id: str) -> str:
        if self.fail:
            raise self.fail.pop(0)
        self.notices.append((room_id, message, txn_id))
        return f"$notice{len(self.notices)}"


def encrypted(
    n: int,
    sender: str = ANN,
    session: str = "S1",
    sender_key: str = "curveA",
    relates_to: dict[str, Any] | None = None,
) -> dict[str, Any]:
    content: dict[str, Any] = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": f"CIPHERTEXT{n}",
        "device_id": "PHONE",
        "sender_key": sender_key,
        "session_id": session,
    }
    if relates_to:
        content["m.relates_to"] = relates_to
    return {
        "type": "m.room.encrypted",
        "event_id": f"$e{n}",
        "sender": sender,
        "origin_server_ts": 1_700_000_000_000 + n,
        "content": content,
    }


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    database = await Database.open(tmp_path / "civicbot.sqlite3")
    yield database
    await database.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def crypto() -> FakeCrypto:
    return FakeCrypto()


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
async def holder(db: Database, crypto: FakeCrypto, sent: Sent, clock: FakeClock) -> Undecryptable:
    undecryptable = Undecryptable(db, BOT, crypto, sent, clock, timeout=60)
    assert await undecryptable.start() == []
    return undecryptable


async def held_count(db: Database) -> int:
    return int(await db.fetchval("SELECT COUNT(*) FROM core_undecryptable_held"))


async def test_a_key_arriving_within_the_timeout_releases_the_event_once_without_a_notice(
    holder: Undecryptable, crypto: FakeCrypto, sent: Sent, clock: FakeClock, db: Database
) -> None:
    assert await holder.hold(ROOM, encrypted(1)) is None
    assert await held_count(db) == 1
    clock.advance(timedelta(seconds=20))
    assert await holder.retry([(ROOM, "S1")]) == []  # the key is not there yet

    crypto.keys.add((ROOM, "S1"))
    released = await holder.retry([(ROOM, "S1")])
    assert [(r.room_id, r.event_id) for r in released] == [(ROOM, "$e1")]
    event = Event.from_raw(released[0].source, released[0].room_id)
    assert (event.kind, event.sender, event.event_id) == (EventKind.MESSAGE, ANN, "$e1")
    assert event.body == f"{SECRET} $e1"
    await holder.handled(released)

    clock.advance(timedelta(minutes=5))
    assert await holder.tick() == []
    assert await holder.retry() == []
    assert sent.notices == []
    assert await held_count(db) == 0


async def test_released_events_stay_held_until_the_core_has_them(
    holder: Undecryptable, crypto: FakeCrypto, sent: Sent, clock: FakeClock, db: Database
) -> None:
    await holder.hold(ROOM, encrypted(1))
    crypto.keys.add((ROOM, "S1"))
    assert [r.event_id for r in await holder.retry([(ROOM, "S1")])] == ["$e1"]
    clock.advance(timedelta(minutes=2))
    assert await holder.retry() == []  # handed out once in this run
    assert await holder.tick() == []
    # A crash before handled(): after the restart it is released again (the core drops the
    # duplicate by event id).
    again = Undecryptable(db, BOT, crypto, sent, clock)
    released = await again.start()
    assert [r.event_id for r in released] == ["$e1"]
    await again.handled(released)
    assert await again.retry() == [] and await held_count(db) == 0
    assert sent.notices == []


async def test_a_key_already_there_decrypts_at_once_and_nothing_is_stored(
    holder: Undecryptable, crypto: FakeCrypto, db: Database
) -> None:
    crypto.keys.add((ROOM, "S1"))
    released = await holder.hold(ROOM, encrypted(1))
    assert released is not None and released.event_id == "$e1"
    assert await held_count(db) == 0
    assert crypto.requests == []


async def test_retry_touches_only_the_sessions_whose_keys_arrived(
    holder: Undecryptable, crypto: FakeCrypto
) -> None:
    await holder.hold(ROOM, encrypted(1, session="S1"))
    await holder.hold(ROOM, encrypted(2, session="S2"))
    await holder.hold(OTHER_ROOM, encrypted(3, session="S1"))
    crypto.keys.update({(ROOM, "S1"), (ROOM, "S2"), (OTHER_ROOM, "S1")})
    assert [r.event_id for r in await holder.retry([(ROOM, "S1")])] == ["$e1"]
    assert [r.event_id for r in await holder.retry()] == ["$e2", "$e3"]


async def test_no_key_means_one_notice_per_device_after_the_timeout(
    holder: Undecryptable, sent: Sent, clock: FakeClock, db: Database
) -> None:
    for n in range(1, 4):
        await holder.hold(ROOM, encrypted(n))
    await holder.hold(ROOM, encrypted(4, session="S2"))  # the same phone, a new megolm session
    clock.advance(timedelta(seconds=59))
    assert await holder.tick() == []
    assert sent.notices == []

    clock.advance(timedelta(seconds=1))
    assert await holder.tick() == []
    assert len(sent.notices) == 1
    room_id, message, txn_id = sent.notices[0]
    assert room_id == ROOM
    content = message.content()
    assert content["msgtype"] == "m.notice"
    assert content["m.mentions"] == {"user_ids": [ANN]}
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$e1"}}
    assert "\n" not in message.text and len(message.text) < 160
    assert message.text.startswith(ANN) and "send it again" in message.text
    assert txn_id == notice_txn_id(ANN, "curveA")
    assert await held_count(db) == 0

    clock.advance(timedelta(minutes=10))
    await holder.tick()
    assert len(sent.notices) == 1


async def test_the_next_tick_is_due_when_the_oldest_held_event_times_out(
    holder: Undecryptable, crypto: FakeCrypto, sent: Sent, clock: FakeClock, db: Database
) -> None:
    assert await holder.seconds_to_tick() is None  # nothing held: the full long-poll
    await holder.hold(ROOM, encrypted(1))
    clock.advance(timedelta(seconds=20))
    await holder.hold(ROOM, encrypted(2, session="S2"))
    assert await holder.seconds_to_tick() == 40
    clock.advance(timedelta(seconds=45))
    assert await holder.seconds_to_tick() == 0  # overdue
    await holder.tick()
    assert len(sent.notices) == 1
    assert await holder.seconds_to_tick() == 15  # the second, held 20 s later
    clock.advance(timedelta(seconds=15))
    await holder.tick()
    assert await holder.seconds_to_tick() is None

    # Just started: nothing is given up on before a full timeout from the start.
    await holder.hold(ROOM, encrypted(3, sender=BEN, sender_key="curveB"))
    clock.advance(timedelta(minutes=5))
    again = Undecryptable(db, BOT, crypto, sent, clock, timeout=60)
    assert await again.seconds_to_tick() is None  # not started: nothing to wait for yet
    await again.start()
    assert await again.seconds_to_tick() == 60


async def test_a_device_already_told_is_never_told_again(
    holder: Undecryptable, sent: Sent, clock: FakeClock
) -> None:
    await holder.hold(ROOM, encrypted(1))
    clock.advance(timedelta(minutes=2))
    await holder.tick()
    await holder.hold(OTHER_ROOM, encrypted(2, session="S9"))  # later, elsewhere, same device
    clock.advance(timedelta(minutes=2))
    await holder.tick()
    assert len(sent.notices) == 1


async def test_another_device_or_person_gets_its_own_notice(
    holder: Undecryptable, sent: Sent, clock: FakeClock
) -> None:
    await holder.hold(ROOM, encrypted(1))
    await holder.hold(ROOM, encrypted(2, session="L1", sender_key="curveLaptop"))
    await holder.hold(ROOM, encrypted(3, sender=BEN, session="B1", sender_key="curveB"))
    clock.advance(timedelta(minutes=2))
    await holder.tick()
    told = sorted((m.mentions, txn) for _, m, txn in sent.notices)
    assert told == sorted(
        [
            ((ANN,), notice_txn_id(ANN, "curveA")),
            ((ANN,), notice_txn_id(ANN, "curveLaptop")),
            ((BEN,), notice_txn_id(BEN, "curveB")),
        ]
    )
    assert len({txn for _, _, txn in sent.notices}) == 3


async def test_the_notice_goes_into_the_thread_the_message_was_in(
    holder: Undecryptable, sent: Sent, clock: FakeClock
) -> None:
    thread = {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True}
    await holder.hold(ROOM, encrypted(1, relates_to=thread))
    clock.advance(timedelta(minutes=2))
    await holder.tick()
    relation = sent.notices[0][1].content()["m.relates_to"]
    assert relation["rel_type"] == "m.thread" and relation["event_id"] == "$root"
    assert relation["m.in_reply_to"] == {"event_id": "$e1"}


async def test_a_key_arriving_just_before_the_last_try_still_releases(
    holder: Undecryptable, crypto: FakeCrypto, sent: Sent, clock: FakeClock, db: Database
) -> None:
    await holder.hold(ROOM, encrypted(1))
    crypto.keys.add((ROOM, "S1"))  # arrived, but no one called retry()
    clock.advance(timedelta(minutes=2))
    released = await holder.tick()
    assert [r.event_id for r in released] == ["$e1"]
    assert sent.notices == []
    await holder.handled(released)
    assert await held_count(db) == 0


async def test_an_unreachable_homeserver_keeps_the_events_and_the_notice_for_the_next_tick(
    holder: Undecryptable, sent: Sent, clock: FakeClock, db: Database
) -> None:
    await holder.hold(ROOM, encrypted(1))
    await holder.hold(ROOM, encrypted(2))
    clock.advance(timedelta(minutes=2))
    sent.fail.append(TransportError("send to room: gave up after 120s (unreachable)"))
    await holder.tick()
    assert sent.notices == [] and await held_count(db) == 2
    await holder.tick()
    assert len(sent.notices) == 1 and sent.notices[0][2] == notice_txn_id(ANN, "curveA")
    assert await held_count(db) == 0


async def test_a_refused_notice_is_not_retried(
    holder: Undecryptable, sent: Sent, clock: FakeClock, db: Database
) -> None:
    await holder.hold(ROOM, encrypted(1))
    clock.advance(timedelta(minutes=2))
    sent.fail.append(TransportError("not allowed", "M_FORBIDDEN"))
    await holder.tick()
    await holder.tick()
    assert sent.notices == [] and await held_count(db) == 0


async def test_the_key_is_requested_once_per_session(
    db: Database, holder: Undecryptable, crypto: FakeCrypto, sent: Sent, clock: FakeClock
) -> None:
    for n in range(1, 4):
        await holder.hold(ROOM, encrypted(n))
    await holder.hold(ROOM, encrypted(1))  # replayed after a crash
    await holder.hold(ROOM, encrypted(4, session="S2"))
    assert crypto.requests == [(ROOM, "S1"), (ROOM, "S2")]
    assert await held_count(db) == 4

    again = Undecryptable(db, BOT, crypto, sent, clock)
    await again.start()
    await again.hold(ROOM, encrypted(5))
    assert crypto.requests == [(ROOM, "S1"), (ROOM, "S2")]


async def test_a_failed_key_request_does_not_stop_the_hold(
    holder: Undecryptable, crypto: FakeCrypto, db: Database
) -> None:
    async def unreachable(room_id: str, raw: dict[str, Any]) -> bool:
        raise TransportError("homeserver unreachable")

    crypto.request_key = unreachable  # type: ignore[method-assign]
    assert await holder.hold(ROOM, encrypted(1)) is None
    assert await held_count(db) == 1


async def test_held_events_survive_a_restart_and_are_retried_against_the_store(
    tmp_path: Path, crypto: FakeCrypto, sent: Sent, clock: FakeClock
) -> None:
    db = await Database.open(tmp_path / "civicbot.sqlite3")
    first = Undecryptable(db, BOT, crypto, sent, clock)
    await first.start()
    await first.hold(ROOM, encrypted(1, session="S1"))
    await first.hold(ROOM, encrypted(2, session="S2"))
    await db.close()

    clock.advance(timedelta(hours=2))  # down for a while; S1's key came meanwhile
    crypto.keys.add((ROOM, "S1"))
    db = await Database.open(tmp_path / "civicbot.sqlite3")
    second = Undecryptable(db, BOT, crypto, sent, clock)
    released = await second.start()
    assert [r.event_id for r in released] == ["$e1"]
    await second.handled(released)

    # S2 waited two hours already, but its key may be in the first syncs: a full timeout more.
    assert await second.tick() == []
    assert sent.notices == []
    clock.advance(timedelta(seconds=61))
    await second.tick()
    assert [m.reply_to for _, m, _ in sent.notices] == ["$e2"]
    assert await held_count(db) == 0
    await db.close()


async def test_the_bots_own_events_are_ignored(
    holder: Undecryptable, crypto: FakeCrypto, sent: Sent, clock: FakeClock, db: Database
) -> None:
    assert await holder.hold(ROOM, encrypted(1, sender=BOT)) is None
    clock.advance(timedelta(minutes=2))
    await holder.tick()
    assert (await held_count(db), crypto.requests, sent.notices) == (0, [], [])


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "m.room.encrypted", "event_id": "$x", "sender": ANN, "content": "nope"},
        {**encrypted(1), "content": {**encrypted(1)["content"], "algorithm": "m.olm.v1"}},
        {**encrypted(1), "content": {**encrypted(1)["content"], "session_id": 7}},
        {**encrypted(1), "sender": None},
    ],
)
async def test_garbage_is_ignored(
    holder: Undecryptable, crypto: FakeCrypto, db: Database, raw: dict[str, Any]
) -> None:
    assert await holder.hold(ROOM, raw) is None
    assert (await held_count(db), crypto.requests) == (0, [])


async def test_a_flood_keeps_only_the_newest_per_room_and_logs_a_count(
    db: Database,
    crypto: FakeCrypto,
    sent: Sent,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder = Undecryptable(db, BOT, crypto, sent, clock, room_cap=3)
    await holder.start()
    await holder.hold(OTHER_ROOM, encrypted(99))
    await holder.hold(ROOM, encrypted(90, sender=BEN, sender_key="curveB"))
    with caplog.at_level(logging.INFO):
        for n in range(1, 6):
            await holder.hold(ROOM, encrypted(n, session=f"S{n}"))
            clock.advance(timedelta(seconds=1))
    rows = await db.fetchall("SELECT event_id FROM core_undecryptable_held ORDER BY event_id")
    # Ann's flood pushed out only her own oldest, not Ben's message nor another room's.
    assert [r[0] for r in rows] == ["$e4", "$e5", "$e90", "$e99"]
    assert any("dropped 1 undecryptable events" in r.getMessage() for r in caplog.records)


async def test_logs_hold_counts_never_contents_or_people(
    holder: Undecryptable,
    crypto: FakeCrypto,
    sent: Sent,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="civicbot"):
        await holder.hold(ROOM, encrypted(1))
        await holder.hold(ROOM, encrypted(2, session="S2"))
        crypto.keys.add((ROOM, "S1"))
        await holder.handled(await holder.retry())
        clock.advance(timedelta(minutes=2))
        await holder.tick()
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("civicbot"))
    assert "1 held encrypted events could be read now" in text
    assert "gave up on 1 encrypted events" in text
    for secret in (SECRET, "CIPHERTEXT", ANN, "curveA"):
        assert secret not in text


async def test_forget_drops_what_is_held_and_told_about_a_person(
    holder: Undecryptable, sent: Sent, clock: FakeClock, db: Database
) -> None:
    await holder.hold(ROOM, encrypted(1))
    clock.advance(timedelta(minutes=2))
    await holder.tick()
    await holder.hold(ROOM, encrypted(2, session="S2"))
    await holder.hold(ROOM, encrypted(3, sender=BEN, sender_key="curveB"))
    assert await holder.forget(ANN) == 2  # one held event, one "told"
    assert await held_count(db) == 1


def test_room_keys_lists_the_sessions_a_sync_brought() -> None:
    algorithm = "m.megolm.v1.aes-sha2"
    response = SimpleNamespace(
        to_device_events=[
            RoomKeyEvent({}, ANN, "curveA", ROOM, "S1", algorithm),
            ForwardedRoomKeyEvent({}, BOT, "curveBot", OTHER_ROOM, "S2", algorithm),
            UnknownToDeviceEvent({}, ANN, "m.dummy"),
        ]
    )
    assert room_keys(response) == [(ROOM, "S1"), (OTHER_ROOM, "S2")]  # type: ignore[arg-type]


async def test_a_notice_resent_after_a_lost_answer_keeps_its_transaction_id(
    db: Database, crypto: FakeCrypto, clock: FakeClock
) -> None:
    attempts: list[str] = []

    async def answer_lost_once(room_id: str, message: Message, txn_id: str) -> str:
        attempts.append(txn_id)  # the homeserver got it each time...
        if len(attempts) == 1:  # ...but the first answer never came back
            raise TransportError("send to room: gave up after 120s (timeout)")
        return "$notice"

    holder = Undecryptable(db, BOT, crypto, answer_lost_once, clock)
    await holder.start()
    await holder.hold(ROOM, encrypted(1))
    clock.advance(timedelta(minutes=2))
    await holder.tick()
    # A crash here, then the same notice from a fresh start: Synapse drops it by its txn id.
    restarted = Undecryptable(db, BOT, crypto, answer_lost_once, clock)
    await restarted.start()
    clock.advance(timedelta(minutes=2))
    await restarted.tick()
    await restarted.tick()
    assert attempts == [notice_txn_id(ANN, "curveA")] * 2
