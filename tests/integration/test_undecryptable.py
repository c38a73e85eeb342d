"""Messages the bot cannot decrypt, against a real Synapse and the real bot (``civicbot run``
with encryption on and ``matrix.undecryptable_timeout`` at its 5 s minimum).

The residents are encrypting nio clients. One withholds her room keys from the bot's device by
blacklisting it, as Element's "never send to unverified sessions" does; to make a key arrive
*late*, the resident exports her megolm session before sending and later hands it to the bot as
a plain ``m.room_key`` over Olm, which is what a client does when the key reaches the bot after
the message. One bot serves the module: each scenario has its own resident (so its own
device, which is what the bot tells once) and its own room.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing
from typing import Any

import pytest
from nio import ToDeviceMessage, ToDeviceResponse
from nio.crypto import OlmDevice

from civicbot.testing.encrypted import EncryptedResident
from civicbot.testing.synapse import LocalSynapse
from tests.integration.conftest import (
    PASSWORD,
    BotProcess,
    encrypted_room,
    is_notice_from,
    reply_target,
    unique,
)

TIMEOUT_S = 5  # matrix.undecryptable_timeout: the least the config allows
# The bot gives up at its first sync after the timeout, and a quiet room's long-poll lasts 30 s.
NOTICE_WAIT_S = TIMEOUT_S + 30 + 25
UNREADABLE = "couldn't read your encrypted message"
Residents = Callable[[str], Awaitable[EncryptedResident]]


@pytest.fixture(scope="module")
def bot(synapse: LocalSynapse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotProcess]:
    """One encrypted bot for the module: logging in, uploading keys and cross-signing take a
    few seconds a start. Started on a loop of its own, as the tests' loops are per test."""
    process = BotProcess(
        synapse,
        tmp_path_factory.mktemp("undecryptable-bot"),
        synapse.register(unique("civicbot"), PASSWORD),
        env={"CIVICBOT_MATRIX__UNDECRYPTABLE_TIMEOUT": str(TIMEOUT_S)},
    )
    _run(process.start())
    yield process
    if process.running:
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
        try:
            _run(process.wait(10))
        except TimeoutError:
            process.kill()


def _run(step: Awaitable[Any]) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(step)
    finally:
        loop.close()


def held(bot: BotProcess, room: str) -> int:
    """How many events of ``room`` the bot holds in its database, waiting for their key."""
    path = bot.directory / "data" / "civicbot.sqlite3"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM core_undecryptable_held WHERE room_id = ?", (room,)
        ).fetchone()
    return int(row[0])


def given_up(bot: BotProcess, room: str) -> int:
    """How many events of ``room`` the bot has dropped unread, as its log counts them."""
    found = re.findall(rf"gave up on (\d+) encrypted events in {re.escape(room)} ", bot.log_text())
    return sum(int(count) for count in found)


async def until(condition: Callable[[], bool], what: str, timeout: float = NOTICE_WAIT_S) -> None:
    """Wait, bounded, until ``condition()`` holds."""
    for _ in range(int(timeout / 0.2)):
        if condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"never {what}")


async def until_held(bot: BotProcess, room: str, count: int) -> None:
    await until(lambda: held(bot, room) == count, f"{count} held in {room}")


async def bot_device(person: EncryptedResident, bot: BotProcess) -> OlmDevice:
    """The bot's device as ``person``'s app knows it."""
    device_id = json.loads((bot.directory / "data" / "session.json").read_text())["device_id"]
    for _ in range(30):
        for device in person.client.device_store.active_user_devices(bot.user_id):
            if device.id == device_id:
                return device
        await person._sync(1)
    raise AssertionError(f"{person.user_id} never learnt the keys of the bot's device")


async def withhold_keys(person: EncryptedResident, bot: BotProcess, room: str) -> OlmDevice:
    """From now on ``person``'s app gives the bot's device no room key: a new megolm session
    for the room, shared with everyone else only."""
    device = await bot_device(person, bot)
    person.client.blacklist_device(device)
    person.client.invalidate_outbound_session(room)
    return device


async def export_session(person: EncryptedResident, room: str) -> dict[str, Any]:
    """Start ``person``'s megolm session for the room now, and return its key as an
    ``m.room_key`` content: exported before any message, it unlocks them all."""
    assert person.client.olm is not None
    await person.client.share_group_session(room, ignore_unverified_devices=True)
    session = person.client.olm.outbound_group_sessions[room]
    return {
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": room,
        "session_id": session.id,
        "session_key": session.session_key,
    }


async def hand_over(person: EncryptedResident, device: OlmDevice, room_key: dict[str, Any]) -> None:
    """Send the bot's device ``room_key`` over Olm, as the late ``m.room_key`` it would be."""
    olm = person.client.olm
    assert olm is not None
    session = olm.session_store.get(device.curve25519)
    if session is None:
        await person.client.keys_claim({device.user_id: [device.id]})
        session = olm.session_store.get(device.curve25519)
    assert session is not None, "no Olm session with the bot's device"
    payload = olm._olm_encrypt(session, device, "m.room_key", room_key)
    sent = await person.client.to_device(
        ToDeviceMessage("m.room.encrypted", device.user_id, device.id, payload)
    )
    assert isinstance(sent, ToDeviceResponse), sent


async def test_keys_that_never_come_bring_one_notice_per_device_and_no_answer(
    bot: BotProcess, encrypted_residents: Residents
):
    ann = await encrypted_residents("ann")
    room = await encrypted_room(ann, bot)
    device = await withhold_keys(ann, bot, room)
    ann.mark()
    pings = [await ann.send_text(room, f"!ping {n}") for n in range(3)]
    notice = await ann.wait_for(room, is_notice_from(bot.user_id, UNREADABLE), NOTICE_WAIT_S)
    assert notice["encrypted"]
    assert notice["content"]["body"].startswith(f"{ann.user_id}, I couldn't read")
    assert notice["content"]["m.mentions"] == {"user_ids": [ann.user_id]}
    assert reply_target(notice) == pings[0]
    await until(lambda: given_up(bot, room) == 3, "dropped the three")
    await until_held(bot, room, 0)  # nothing left waiting

    # Another message from the same device, still without its key: dropped, no second notice.
    await ann.send_text(room, "!ping later")
    await until(lambda: given_up(bot, room) == 4, "dropped the later one")
    await until_held(bot, room, 0)

    # Ann's app shares its keys again: she is answered, and whatever the bot said about the
    # unreadable messages is in the timeline before that answer: the one notice, nothing else.
    ann.client.unblacklist_device(device)
    ann.client.invalidate_outbound_session(room)
    readable = await ann.send_text(room, "!ping")
    pong = await ann.wait_for(room, lambda e: reply_target(e) == readable)
    assert "Pong" in pong["content"]["body"]
    said = [e["event_id"] for e in ann.since_mark(room) if e["sender"] == bot.user_id]
    assert said == [notice["event_id"], pong["event_id"]]


async def test_a_message_whose_key_comes_late_is_answered_once_and_no_one_is_told(
    bot: BotProcess, encrypted_residents: Residents
):
    bea = await encrypted_residents("bea")
    room = await encrypted_room(bea, bot)
    device = await withhold_keys(bea, bot, room)
    room_key = await export_session(bea, room)
    bea.mark()
    ping = await bea.send_text(room, "!ping")
    await until_held(bot, room, 1)

    await hand_over(bea, device, room_key)
    pong = await bea.wait_for(room, lambda e: reply_target(e) == ping)
    assert pong["encrypted"] and "Pong" in pong["content"]["body"]
    await until_held(bot, room, 0)  # handled just after the core has answered

    # Past the timeout, a batch later (the bot gives up only at a sync): nothing to tell.
    await asyncio.sleep(TIMEOUT_S + 1)
    after = await bea.send_text(room, "!ping")  # the same session, whose key the bot has now
    again = await bea.wait_for(room, lambda e: reply_target(e) == after)
    said = [e["event_id"] for e in bea.since_mark(room) if e["sender"] == bot.user_id]
    assert said == [pong["event_id"], again["event_id"]]  # answered once each, no notice


async def test_a_message_held_across_a_crash_is_answered_once_when_its_key_comes(
    bot: BotProcess, encrypted_residents: Residents
):
    cy = await encrypted_residents("cy")
    room = await encrypted_room(cy, bot)
    device = await withhold_keys(cy, bot, room)
    room_key = await export_session(cy, room)
    cy.mark()
    ping = await cy.send_text(room, "!ping")
    await until_held(bot, room, 1)

    bot.kill()  # SIGKILL, wherever it was: the held event is in the database already
    await hand_over(cy, device, room_key)  # waits on the homeserver for the bot's next sync
    await bot.start()
    pong = await cy.wait_for(room, lambda e: reply_target(e) == ping)
    assert "Pong" in pong["content"]["body"]
    await until_held(bot, room, 0)  # handled just after the core has answered

    after = await cy.send_text(room, "!ping")
    again = await cy.wait_for(room, lambda e: reply_target(e) == after)
    said = [e["event_id"] for e in cy.since_mark(room) if e["sender"] == bot.user_id]
    assert said == [pong["event_id"], again["event_id"]]  # answered once each, no notice
