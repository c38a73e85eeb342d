"""Encrypted rooms against a real Synapse: residents on nio clients with encryption, as
Element residents are, and the bot as a full member (issue 14)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Awaitable

import pytest

from civicbot.testing.encrypted import EncryptedResident
from tests.integration.conftest import BotProcess, encrypted_room, is_for, is_notice_from
from tests.integration.test_crosssigning import _only_key, _verify

START = "org.matrix.msc3381.poll.start"
RESPONSE = "org.matrix.msc3381.poll.response"
END = "org.matrix.msc3381.poll.end"


async def ask(
    person: EncryptedResident, room: str, text: str, bot: BotProcess, reply_to: str | None = None
) -> dict:
    """Send a command; return the bot's (decrypted) reply, checking it came encrypted."""
    person.mark()
    sent = await person.send_text(room, text, reply_to=reply_to)
    reply = await person.wait_for(
        room,
        lambda e: (
            e["sender"] == bot.user_id
            and (e["content"].get("m.relates_to") or {}).get("m.in_reply_to", {}).get("event_id")
            == sent
        ),
    )
    assert reply["encrypted"], reply
    return reply


def tap(person: EncryptedResident, room: str, start_id: str, *answers: str) -> Awaitable[str]:
    return person.send_event(
        room,
        RESPONSE,
        {
            "m.relates_to": {"rel_type": "m.reference", "event_id": start_id},
            RESPONSE: {"answers": list(answers)},
        },
    )


async def test_an_encrypted_room_works_as_a_plain_one(encrypted_residents, bots):
    """Commands, a native poll voted on by encrypted taps and by !vote, threads, a file export
    and a secret ballot in an encrypted DM: all answered, counted and encrypted."""
    ann, bob = await encrypted_residents("ann"), await encrypted_residents("bob")
    bot = await bots(plugins={"polls": {"min_secret_voters": 1}})  # one ballot shows its count
    room = await encrypted_room(ann, bot, bob)

    assert "Pong" in (await ask(ann, room, "!ping", bot))["content"]["body"]
    assert "!poll" in (await ask(bob, room, "!help", bot))["content"]["body"]

    # A thread: the answer stays in it.
    root = await ann.send_text(room, "Bins this week?")
    ann.mark()
    await ann.send_event(
        room,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "!ping",
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": root},
            },
        },
    )
    threaded = await ann.wait_for(room, is_notice_from(bot.user_id, "Pong"))
    assert threaded["content"]["m.relates_to"]["rel_type"] == "m.thread"
    assert threaded["content"]["m.relates_to"]["event_id"] == root

    # A reply is answered; an edit that turns a message into a command is not.
    said = await ann.send_text(room, "Who is bringing gloves?")
    assert "Pong" in (await ask(bob, room, "!ping", bot, reply_to=said))["content"]["body"]
    ann.mark()
    edit = await ann.send_event(
        room,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "* !ping",
            "m.new_content": {"msgtype": "m.text", "body": "!ping"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": said},
        },
    )
    after = await ann.send_text(room, "!ping")  # answered after the edit was read
    await ann.wait_for(room, lambda e: _replies_to(e, after))
    assert not [e for e in ann.since_mark(room) if _replies_to(e, edit) or _replies_to(e, said)]

    # A native poll: encrypted start, encrypted taps, a typed vote, an encrypted end.
    ann.mark()
    await ann.send_text(room, "!poll Which day for the litter pick? | Saturday | Sunday")
    start = await ann.wait_for(room, lambda e: e["type"] == START and e["sender"] == bot.user_id)
    assert start["encrypted"]
    await tap(ann, room, start["event_id"], "1")
    await tap(bob, room, start["event_id"], "2")
    await tap(bob, room, start["event_id"], "1")  # Bob changes his mind
    vote = await ask(bob, room, "!vote P-1 2", bot)  # ... and again, by typing
    assert "your vote in P-1 is 2. Sunday" in vote["content"]["body"]
    ann.mark()
    await ann.send_text(room, "!poll close P-1")
    results = await ann.wait_for(room, is_notice_from(bot.user_id, "Results of P-1"))
    assert results["encrypted"]
    body = results["content"]["body"]
    assert "1. Saturday: █████░░░░░ 1 (50%)" in body
    assert "2. Sunday: █████░░░░░ 1 (50%)" in body
    end = await ann.wait_for(room, lambda e: e["type"] == END and e["sender"] == bot.user_id)
    assert end["encrypted"]

    # What the homeserver keeps of the bot's messages is ciphertext only.
    stored = [
        e["type"]
        for e in await ann.stored_events(room)
        if e["sender"] == bot.user_id and "state_key" not in e
    ]
    assert len(stored) >= 8 and set(stored) == {"m.room.encrypted"}, stored

    # A secret ballot, cast in the encrypted DM the bot opens for the data export.
    ann.mark()
    await ann.send_text(room, "!poll Spend the grant on? | Benches | Planters | secret")
    await ann.wait_for(room, is_notice_from(bot.user_id, "Secret ballot"))
    sent = await ask(ann, room, "!mydata", bot)
    assert sent["content"]["body"].startswith("I've sent you a direct message")
    direct = await ann.wait_for_invite_from(bot.user_id)
    await ann.join(direct)
    assert ann.client.rooms[direct].encrypted  # made encrypted: Ann's devices have keys
    file_event = await ann.wait_for(direct, lambda e: e["content"].get("msgtype") == "m.file")
    assert file_event["encrypted"]
    assert "url" not in file_event["content"] and "file" in file_event["content"]
    export = json.loads(await ann.download_file(file_event["content"]))
    assert export["user_id"] == ann.user_id
    # The stored file is ciphertext: not JSON.
    with pytest.raises(ValueError):
        json.loads(await ann.http.download(file_event["content"]["file"]["url"]))

    counted = await ask(ann, direct, "!vote P-2 2", bot)
    assert "has been counted" in counted["content"]["body"]
    stored = [e for e in await ann.stored_events(direct) if "state_key" not in e]
    said = [e["type"] for e in stored]
    assert said and set(said) == {"m.room.encrypted"}, stored  # the ballot and every answer
    ann.mark()
    await ann.send_text(room, "!poll close P-2")
    tally = await ann.wait_for(room, is_notice_from(bot.user_id, "Results of P-2"))
    assert "Winner: Planters." in tally["content"]["body"]

    # A reaction encrypted as Element sends it: ✋ on a need offers help, answered by DM.
    ann.mark()
    posted = await ask(bob, room, "!need help carrying shopping upstairs | this week", bot)
    assert "N-1 is posted" in posted["content"]["body"]
    post = await ann.wait_for(room, is_notice_from(bot.user_id, "!can N-1"))
    await ann.react_encrypted(room, post["event_id"], "✋")
    thanks = await ann.wait_for(direct, is_for(bot.user_id, ann.user_id, "I've asked the person"))
    assert thanks["encrypted"] and "N-1" in thanks["content"]["body"]


async def test_restarts_and_a_crash_in_an_encrypted_room_lose_nothing(encrypted_residents, bots):
    """Stopped, killed and restarted, the bot answers each command once and still reads the
    room with the keys it kept; with its store lost it comes back as a new device, and says
    so in the log."""
    ann = await encrypted_residents("ann")
    bot = await bots()
    room = await encrypted_room(ann, bot)
    await ask(ann, room, "!ping", bot)
    master_key = await cross_signed_by(ann, bot)

    assert await bot.stop() == 0
    ann.mark()
    asked = [await ann.send_text(room, "!ping") for _ in range(2)]  # while it is away
    await bot.start()
    for event_id in asked:
        await ann.wait_for(room, lambda e, i=event_id: _replies_to(e, i))

    ann.mark()
    asked = [await ann.send_text(room, "!ping") for _ in range(3)]
    bot.kill()  # SIGKILL, wherever it was
    await bot.start()
    for event_id in asked:
        await ann.wait_for(room, lambda e, i=event_id: _replies_to(e, i))
    last = await ann.send_text(room, "!ping")  # it carries on: time for any duplicate to show
    await ann.wait_for(room, lambda e: _replies_to(e, last))
    pongs = [e for e in ann.since_mark(room) if e["sender"] == bot.user_id]
    answered = [e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] for e in pongs]
    assert sorted(answered) == sorted(set(answered)), "a command was answered twice"
    assert set(asked) <= set(answered)

    # A backup carries the store; its room keys can be exported for another device.
    assert await bot.stop() == 0
    data = bot.directory / "data"
    backup = bot.directory / "backup"
    civicbot(bot, "backup", str(backup))
    manifest = json.loads((backup / "MANIFEST.json").read_text())
    assert manifest["items"]["crypto"]["kind"] == "dir"
    (bot.directory / "passphrase").write_text("correct horse battery staple\n")
    keyfile = bot.directory / "room-keys.txt"
    civicbot(bot, "keys", "export", str(keyfile))
    assert keyfile.read_text().startswith("-----BEGIN MEGOLM SESSION DATA-----")

    # The store is lost: a new device, a warning, and the room still works.
    old_device = json.loads((data / "session.json").read_text())["device_id"]
    shutil.rmtree(data / "crypto")
    await bot.start()
    assert "logging in as a new device" in bot.log_text()
    new_device = json.loads((data / "session.json").read_text())["device_id"]
    assert new_device != old_device
    assert "Pong" in (await ask(ann, room, "!ping", bot))["content"]["body"]
    assert await cross_signed_by(ann, bot) == master_key  # the new device, by the same keys
    # The old keys go into the new device's store, and it starts with them.
    assert await bot.stop() == 0
    civicbot(bot, "keys", "import", str(keyfile))
    await bot.start()
    assert "Pong" in (await ask(ann, room, "!ping", bot))["content"]["body"]


async def cross_signed_by(person: EncryptedResident, bot: BotProcess) -> str:
    """The master key that vouches for the bot's current device, as ``person`` sees the bot's
    keys: the device signed by the self-signing key, that key by the master key. signedjson
    checks the signatures, not our code."""
    device_id = json.loads((bot.directory / "data" / "session.json").read_text())["device_id"]
    seen = await person.http._request(
        "POST", "/_matrix/client/v3/keys/query", {"device_keys": {bot.user_id: []}}
    )
    master, ssk = seen["master_keys"][bot.user_id], seen["self_signing_keys"][bot.user_id]
    assert master["usage"] == ["master"] and ssk["usage"] == ["self_signing"]
    master_id, master_public = _only_key(master)
    ssk_id, ssk_public = _only_key(ssk)
    _verify(ssk, bot.user_id, master_id, master_public)
    _verify(seen["device_keys"][bot.user_id][device_id], bot.user_id, ssk_id, ssk_public)
    return master_public


def civicbot(bot: BotProcess, *args: str) -> None:
    """A ``civicbot`` command beside the bot, as its operator runs one."""
    extra = ["--passphrase-file", str(bot.directory / "passphrase")] if args[0] == "keys" else []
    done = subprocess.run(
        [sys.executable, "-m", "civicbot", *args, "--config", str(bot.config_path), *extra],
        capture_output=True,
        text=True,
        cwd=bot.directory,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _replies_to(event: dict, event_id: str) -> bool:
    relation = event["content"].get("m.relates_to") or {}
    return relation.get("m.in_reply_to", {}).get("event_id") == event_id


async def test_with_encryption_off_an_encrypted_room_is_told_once(encrypted_residents, bots):
    ann = await encrypted_residents("ann")
    bot = await bots(env={"CIVICBOT_MATRIX__ENCRYPTION": "false"})
    room = await ann.create_room(name="Elm Street", invite=[bot.user_id])
    notice = await ann.wait_for(room, is_notice_from(bot.user_id, "This room is encrypted"))
    assert not notice["encrypted"]
    assert "matrix.encryption = true" in notice["content"]["body"]
    while bot.user_id in await _joined(ann, room):  # the default policy: it leaves
        await ann._sync(1)
    told = [
        e
        for e in await ann.stored_events(room)
        if e["sender"] == bot.user_id and e["type"] == "m.room.message"
    ]
    assert len(told) == 1


async def _joined(person: EncryptedResident, room: str) -> list[str]:
    data = await person.http._request(
        "GET", f"/_matrix/client/v3/rooms/{room.replace('!', '%21')}/joined_members"
    )
    return list(data.get("joined", {}))
