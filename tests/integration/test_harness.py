"""Smoke test for the integration harness: a private Synapse and raw-HTTP residents."""

from __future__ import annotations

import asyncio

import pytest

from civicbot.testing.client import MatrixHTTPError, Resident
from civicbot.testing.synapse import LocalSynapse

PASSWORD = "correct horse"


@pytest.fixture
def homeserver(synapse: LocalSynapse) -> LocalSynapse:
    """The session's Synapse (see conftest.py): starting one costs about two seconds."""
    return synapse


async def test_invite_join_and_message(homeserver: LocalSynapse) -> None:
    alice_id = homeserver.register("alice", PASSWORD)
    bob_id = homeserver.register("bob", PASSWORD)
    assert alice_id == "@alice:localhost"
    # Registering again is not an error.
    assert homeserver.register("alice", PASSWORD) == alice_id

    alice = await Resident.login(homeserver.url, alice_id, PASSWORD)
    bob = await Resident.login(homeserver.url, bob_id, PASSWORD)
    try:
        room = await alice.create_room(name="Elm Street", invite=[bob_id])
        assert await bob.wait_for_invite() == room
        await bob.join(room)
        assert await alice.joined_members(room) == sorted([alice_id, bob_id])

        alice.mark()
        sent = await bob.send_text(room, "hello neighbours")
        got = await alice.wait_for(
            room, lambda e: e["type"] == "m.room.message" and e["sender"] == bob_id
        )
        assert got["event_id"] == sent
        assert got["room_id"] == room
        assert got["content"] == {"msgtype": "m.text", "body": "hello neighbours", "m.mentions": {}}

        # Relations come back through the v1 endpoint; threads are shaped like Element's.
        reaction = await alice.react(room, sent, "👍")
        reply = await alice.send_text(room, "hi bob", thread_root=sent)
        rels = await bob.relations(room, sent)
        assert {e["event_id"] for e in rels} == {reaction, reply}
        annotations = await bob.relations(room, sent, "m.annotation")
        assert [e["event_id"] for e in annotations] == [reaction]

        # Rate limits are lifted: Synapse's default burst is 10 messages.
        burst = await asyncio.gather(*(bob.send_text(room, f"n{i}") for i in range(30)))
        assert len(set(burst)) == 30

        # Events seen before the mark are not offered again.
        alice.mark()
        with pytest.raises(TimeoutError):
            await alice.wait_for(room, lambda e: e["event_id"] == sent, timeout=0.5)

        with pytest.raises(MatrixHTTPError) as err:
            await bob.get_state(room, "org.example.unset")
        assert err.value.status == 404
        assert err.value.errcode == "M_NOT_FOUND"
    finally:
        await alice.close()
        await bob.close()


async def test_restart_keeps_users_and_url(homeserver: LocalSynapse) -> None:
    carol_id = homeserver.register("carol", PASSWORD)
    url = homeserver.url

    homeserver.stop()
    assert not homeserver.running
    homeserver.stop()  # idempotent
    homeserver.start()

    assert homeserver.running
    assert homeserver.url == url
    # The account survived, and the same URL serves it.
    carol = await Resident.login(url, carol_id, PASSWORD)
    try:
        room = await carol.create_room(name="After restart")
        assert await carol.joined_members(room) == [carol_id]
    finally:
        await carol.close()


async def test_resident_event_helpers(homeserver: LocalSynapse) -> None:
    """The helpers other tests lean on send what they claim to send."""
    dave_id = homeserver.register("dave", PASSWORD)
    erin_id = homeserver.register("erin", PASSWORD)
    dave = await Resident.login(homeserver.url, dave_id, PASSWORD)
    erin = await Resident.login(homeserver.url, erin_id, PASSWORD)
    try:
        room = await dave.create_room(name="Helpers")
        await dave.invite(room, erin_id)
        assert await erin.wait_for_invite() == room
        await erin.join(room)

        await dave.set_power_level(room, erin_id, 50)
        levels = await erin.get_state(room, "m.room.power_levels")
        assert levels["users"][erin_id] == 50
        # A state key with / and : checks that path parts are quoted.
        await dave.send_state(room, "org.example.note", {"n": 1}, state_key="street/12:a")
        assert await erin.get_state(room, "org.example.note", "street/12:a") == {"n": 1}

        start = await dave.send_event(room, "org.matrix.msc3381.poll.start", {"q": "?"})
        erin.mark()
        vote = {
            "m.relates_to": {"rel_type": "m.reference", "event_id": start},
            "org.matrix.msc3381.poll.response": {"answers": ["a"]},
        }
        # Same txn id twice: the server deduplicates, like a client retrying.
        assert await dave.send_event(room, "org.matrix.msc3381.poll.response", vote, "t1") == (
            await dave.send_event(room, "org.matrix.msc3381.poll.response", vote, "t1")
        )
        seen = await erin.wait_for(room, lambda e: e["type"].endswith("poll.response"))
        assert seen["content"] == vote

        reply = await erin.send_text(room, "noted", reply_to=start, mentions=[dave_id])
        newest = (await dave.messages(room, limit=5))[0]
        assert newest["event_id"] == reply
        assert newest["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": start}}
        assert newest["content"]["m.mentions"] == {"user_ids": [dave_id]}

        redaction = await dave.redact(room, reply, reason="tidy")
        seen = await erin.wait_for(room, lambda e: e["type"] == "m.room.redaction")
        assert seen["event_id"] == redaction
        # Room version 11+ moved `redacts` into the content.
        assert seen["content"]["redacts"] == reply
        await erin.leave(room)
        assert await dave.joined_members(room) == [dave_id]
    finally:
        await dave.close()
        await erin.close()
