"""One contract, two implementations: the fake transport of the fast tests and the Matrix
transport against a real Synapse pass the same scenarios (as mautrix-python runs one store test
over each backend). When the fast tests lean on the fake, this is what makes them mean what the
slow ones do: a behaviour the fake gets wrong fails here, on the fake's side."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from civicbot.config import MatrixSettings
from civicbot.core.events import Message
from civicbot.storage.database import Database
from civicbot.testing.client import Resident
from civicbot.transport import Transport
from civicbot.transport.fake import FakeTransport
from civicbot.transport.matrix import MatrixTransport
from tests.integration.conftest import PASSWORD, unique


@dataclass
class World:
    """A transport with the bot logged in, and a way to make people and rooms around it."""

    transport: Transport
    person: Callable[[str], Awaitable[str]]  # a new resident's Matrix id
    group: Callable[[str, list[str]], Awaitable[str]]  # creator, members → a room with the bot
    rename: Callable[[str, str, str], Awaitable[None]]  # person, room, new display name there


async def fake_world(tmp_path: Path) -> AsyncIterator[World]:
    transport = FakeTransport()

    async def person(name: str) -> str:
        return f"@{unique(name)}:test"

    async def group(creator: str, members: list[str]) -> str:
        room_id = f"!{unique('room')}:test"
        # Synapse's default room version (12 since Synapse 1.135)
        room = transport.add_room(room_id, [creator, *members], creator=creator, room_version="12")
        now = int(transport.clock.now().timestamp() * 1000)
        room.joined_at.update({user: now for user in room.members})
        return room_id

    async def rename(user_id: str, room_id: str, name: str) -> None:
        pass  # a new display name is no new stay in the room: nothing the fake keeps changes

    yield World(transport, person, group, rename)


async def matrix_world(synapse, tmp_path: Path) -> AsyncIterator[World]:
    bot_id = synapse.register(unique("civicbot"), PASSWORD)
    db = await Database.open(tmp_path / "bot.sqlite3")
    transport = MatrixTransport(
        MatrixSettings(homeserver=synapse.url, user_id=bot_id, password=PASSWORD, encryption=False),
        tmp_path / "data",
        db,
    )
    people: dict[str, Resident] = {}

    async def person(name: str) -> str:
        user_id = synapse.register(unique(name), PASSWORD)
        people[user_id] = await Resident.login(synapse.url, user_id, PASSWORD)
        return user_id

    async def group(creator: str, members: list[str]) -> str:
        room_id = await people[creator].create_room(name="Elm Street", invite=[*members, bot_id])
        for member in members:
            await people[member].join(room_id)
        await transport.join(room_id)
        return room_id

    async def rename(user_id: str, room_id: str, name: str) -> None:
        content = {"membership": "join", "displayname": name}
        await people[user_id].send_state(room_id, "m.room.member", content, state_key=user_id)

    try:
        await transport.login()
        yield World(transport, person, group, rename)
    finally:
        for resident in people.values():
            await resident.close()
        await transport.close()
        await db.close()


@pytest.fixture(params=["fake", "matrix"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "fake":
        made = fake_world(tmp_path)
    else:
        made = matrix_world(request.getfixturevalue("synapse"), tmp_path)
    async for each in made:
        yield each


async def test_a_send_repeated_with_its_transaction_id_is_kept_once(world: World) -> None:
    ann = await world.person("ann")
    room = await world.group(ann, [])
    first = await world.transport.send_message(room, Message("Hello"), "contract.hello")
    again = await world.transport.send_message(room, Message("Hello"), "contract.hello")
    other = await world.transport.send_message(room, Message("Hello"), "contract.hello.2")
    assert first == again  # the homeserver keeps one copy: a replayed handler says nothing new
    assert other != first
    same_txn_elsewhere = await world.transport.send_message(
        await world.group(ann, []), Message("Hello"), "contract.hello"
    )
    assert same_txn_elsewhere != first  # transaction ids are per room


async def test_rooms_members_and_state_read_the_same(world: World) -> None:
    ann, bob = await world.person("ann"), await world.person("bob")
    room = await world.group(ann, [bob])
    t = world.transport
    assert {ann, bob, t.user_id} <= set(await t.joined_members(room))
    assert room in await t.joined_rooms()
    assert await t.state_event(room, "m.room.topic") is None  # absent state is None
    create = await t.create_event(room)
    assert create is not None and create["sender"] == ann
    assert create["content"]["room_version"] == "12"
    # Room version 12: the creator runs the room without being listed in the power levels
    # (the permission layer reads the create event for them).
    levels = await t.state_event(room, "m.room.power_levels")
    assert levels is not None and ann not in levels.get("users", {})


async def test_a_stay_in_a_room_begins_at_the_join_not_at_a_new_display_name(
    world: World,
) -> None:
    """How long someone has been in a room tells a look-alike room from theirs (issue 19 §2)."""
    ann, bob, eve = [await world.person(n) for n in ("ann", "bob", "eve")]
    room = await world.group(ann, [bob])
    t = world.transport
    joined = await t.joined_since(room, bob)
    now = time.time() * 1000
    assert joined is not None and now - 120_000 < joined <= now + 5_000
    for name in ("Bob B", "Bobby"):
        await world.rename(bob, room, name)
    assert await t.joined_since(room, bob) == joined
    assert await t.joined_since(room, t.user_id) is not None
    assert await t.joined_since(room, eve) is None  # not in the room


async def test_a_direct_chat_passes_the_dm_rule_and_a_group_room_never_does(world: World) -> None:
    ann, bob = await world.person("ann"), await world.person("bob")
    t = world.transport
    room = await world.group(ann, [bob])
    direct = await t.direct_room(ann)
    assert direct != room
    assert await t.is_direct_with(direct, ann)
    assert not await t.is_direct_with(direct, bob)  # Ann's DM is nobody else's
    assert not await t.is_direct_with(room, ann)
    assert await t.direct_room(ann) == direct  # kept, not made again
    assert await t.known_direct_room(ann) == direct
    assert await t.forget_direct_room(ann) >= 1
    assert await t.known_direct_room(ann) is None


async def test_a_private_room_is_made_anew_each_time_with_exactly_those_invited(
    world: World,
) -> None:
    ann, bob = await world.person("ann"), await world.person("bob")
    t = world.transport
    first = await t.create_private_room("N-1: mutual aid", [ann, bob])
    second = await t.create_private_room("N-1: mutual aid", [ann, bob])
    assert first != second  # callers remember the id; the transport never guesses
    rules = await t.state_event(first, "m.room.join_rules")
    assert rules is not None and rules["join_rule"] == "invite"
    assert t.user_id in await t.joined_members(first)


async def test_relations_and_redactions(world: World) -> None:
    ann = await world.person("ann")
    t = world.transport
    room = await world.group(ann, [])
    root = await t.send_message(room, Message("A poll"), "contract.root")
    ref = await t.send_event(
        room,
        "m.room.message",
        {
            "msgtype": "m.notice",
            "body": "about the poll",
            "m.relates_to": {"rel_type": "m.reference", "event_id": root},
        },
        "contract.ref",
    )
    found = await t.relations(room, root, "m.reference")
    assert [e.event_id for e in found] == [ref]
    assert await t.relations(room, root, "m.annotation") == []
    redaction = await t.redact(room, ref, "mistake", "contract.redact")
    assert redaction and redaction != ref
