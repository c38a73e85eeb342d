"""The privacy holes of issue 8, replayed against Synapse with residents as real clients.

Private output (a data export, the details of ``!forget me``, a secret vote and its receipt) may
only reach a room that passes the DM rule of DESIGN.md §3: invite-only, exactly the bot and the
person joined or invited, and made as a DM by one of the two.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from civicbot.testing.client import Resident
from civicbot.transport.direct import NO_LONGER_PRIVATE, dm_problem
from tests.integration.conftest import (
    PASSWORD,
    BotProcess,
    is_notice_from,
    reply_target,
    room_with_bot,
)

Event = dict[str, Any]
# These tests send bursts on purpose; the flood guard has tests of its own.
NO_FLOOD_LIMITS = {"person_burst": 0, "room_burst": 0, "everywhere_burst": 0}


def private_output(bot_id: str, event: Event) -> bool:
    """A message of the bot that only its addressee may read."""
    content = event.get("content") or {}
    body = str(content.get("body", ""))
    return event.get("sender") == bot_id and (
        content.get("msgtype") == "m.file"
        or body.startswith("Here is everything I store about you")
        or body.startswith("I've forgotten you")
        or body.startswith("I had nothing stored about you")
        or "has been counted" in body
        or body.startswith("You have already voted")
    )


async def private_messages_in(reader: Resident, room: str, bot_id: str) -> list[str]:
    """What private output of the bot ``reader`` (a member) can read in ``room``'s history."""
    events = await reader.messages(room, limit=200)
    return [str(e["content"].get("body", "")) for e in events if private_output(bot_id, e)]


async def ask(resident: Resident, room: str, text: str, bot: BotProcess) -> Event:
    """Send ``text`` and return the bot's reply to it."""
    resident.mark()
    sent = await resident.send_text(room, text)
    return await resident.wait_for(
        room, lambda e: is_notice_from(bot.user_id)(e) and reply_target(e) == sent, timeout=30
    )


async def settle(resident: Resident, room: str, bot: BotProcess) -> list[Event]:
    """Everything the bot said in ``room`` after the mark, up to its answer to a ``!ping``.

    A room's events are handled in order, so whatever the bot was going to say about earlier
    events has been said by then."""
    ping = await resident.send_text(room, "!ping")
    await resident.wait_for(
        room, lambda e: is_notice_from(bot.user_id, "Pong")(e) and reply_target(e) == ping
    )
    return [
        e
        for e in resident._since_mark(room)
        if e.get("sender") == bot.user_id and reply_target(e) != ping
    ]


def bot_left(bot: BotProcess):
    def check(event: Event) -> bool:
        return (
            event["type"] == "m.room.member"
            and event["state_key"] == bot.user_id
            and event["content"].get("membership") == "leave"
        )

    return check


async def bot_m_direct(bot: BotProcess) -> dict[str, list[str]]:
    """The bot's own record of its DMs, read as a second session of its account."""
    session = await Resident.login(bot.synapse.url, bot.user_id, PASSWORD)
    try:
        return await session.account_data("m.direct")
    finally:
        await session.close()


async def unrecorded(bot: BotProcess, person: Resident, room: str) -> bool:
    """Whether the bot drops ``room`` from its DM record within a few seconds (it does so
    right after leaving)."""
    for _ in range(50):
        if room not in (await bot_m_direct(bot)).get(person.user_id, []):
            return True
        await asyncio.sleep(0.1)
    return False


async def passes_dm_rule(person: Resident, room: str, bot: BotProcess) -> bool:
    recorded = room in (await bot_m_direct(bot)).get(person.user_id, [])
    return dm_problem(await person.room_state(room), bot.user_id, person.user_id, recorded) is None


async def export_room(person: Resident, bot: BotProcess, known: set[str]) -> str:
    """Where the bot sent ``person`` their data file: a DM it has invited them to (joined now),
    or one they already had (``known``)."""
    for room in known:
        events = await person.messages(room, limit=20)
        if any(e["content"].get("msgtype") == "m.file" for e in events):
            return room
    room = await person.wait_for_invite_from(bot.user_id, exclude=known)
    await person.join(room)
    await person.wait_for(room, lambda e: e["content"].get("msgtype") == "m.file", timeout=30)
    return room


async def test_a_trap_room_someone_else_made_is_never_taken_for_a_dm(residents, bots):
    """§1: Eve makes a public room, lets the bot in, invites Bob and leaves. The bot used to take
    it for Bob's DM (it held just the bot and Bob's pending invite), upload his export there and
    post his forget report and secret vote where Eve could read them again."""
    mod, bob, eve = await residents("mod"), await residents("bob"), await residents("eve")
    bot = await bots()
    street = await room_with_bot(mod, bot, bob, eve)
    trap = await eve.create_room(name="civicbot", preset="public_chat", invite=[bot.user_id])
    eve.mark()
    await eve.wait_for(trap, is_notice_from(bot.user_id, "Hello"), timeout=30)
    await eve.invite(trap, bob.user_id)
    await eve.leave(trap)

    reply = await ask(bob, street, "!mydata", bot)
    assert reply["content"]["body"].startswith("I've sent you a direct message")
    first = await export_room(bob, bot, known=set())
    assert first != trap
    assert await passes_dm_rule(bob, first, bot)

    # Bob accepts Eve's invite, thinking it is his chat with the bot: just him and the bot now.
    await bob.join(trap)
    assert sorted(await bob.joined_members(trap)) == sorted([bob.user_id, bot.user_id])
    assert not await passes_dm_rule(bob, trap, bot)
    mod.mark()
    await mod.send_text(street, "!poll Where do the bins go? | Elm Street | Oak Street | secret")
    await mod.wait_for(street, is_notice_from(bot.user_id, "Secret ballot"))
    refusal = await ask(bob, trap, "!vote P-1 2", bot)
    assert "please don't vote here" in refusal["content"]["body"]
    done = await ask(bob, trap, "!forget me", bot)  # the details go to his real DM, not here
    assert "details in a direct message" in done["content"]["body"]
    # Forgetting dropped the saved DM; the trap must still not be adopted afterwards.
    reply = await ask(bob, street, "!mydata", bot)
    assert reply["content"]["body"].startswith("I've sent you a direct message")
    again = await export_room(bob, bot, known={first})
    assert again != trap

    await eve.join(trap)  # it is public: Eve comes back to read what landed there
    assert await private_messages_in(eve, trap, bot.user_id) == []
    mod.mark()
    await mod.send_text(street, "!poll show P-1")
    shown = await mod.wait_for(street, is_notice_from(bot.user_id, "P-1 (open)"))
    assert "0 people have voted so far" in shown["content"]["body"]


async def test_two_members_or_pending_invites_do_not_make_a_dm(residents, bots):
    """§1: any room with two *joined* members counted as a DM: ``!mydata`` posted the export in
    it, ``!polls`` listed every room's polls, and a secret vote was accepted in a new group room
    while the invited neighbours had not joined yet (and could read it afterwards)."""
    ann, cat, dan = await residents("ann"), await residents("cat"), await residents("dan")
    bot = await bots()
    pair = await room_with_bot(ann, bot)  # Ann and the bot only, but not made as a DM
    assert len(await ann.joined_members(pair)) == 2
    reply = await ask(ann, pair, "!mydata", bot)
    assert reply["content"]["body"].startswith("I've sent you a direct message")
    direct = await export_room(ann, bot, known=set())
    assert direct != pair
    assert await private_messages_in(ann, pair, bot.user_id) == []

    ann.mark()
    await ann.send_text(pair, "!poll Spend the grant on? | Benches | Planters | secret")
    await ann.wait_for(pair, is_notice_from(bot.user_id, "Secret ballot"))
    group = await ann.create_room(name="New group", invite=[bot.user_id, cat.user_id, dan.user_id])
    ann.mark()
    await ann.wait_for(group, is_notice_from(bot.user_id, "Hello"), timeout=30)
    listed = await ask(ann, group, "!polls", bot)
    assert "Spend the grant" not in listed["content"]["body"]
    refusal = await ask(ann, group, "!vote P-1 1", bot)
    assert "please don't vote here" in refusal["content"]["body"]
    await cat.join(group)
    assert await private_messages_in(cat, group, bot.user_id) == []
    # In her real DM the same vote is taken, and !polls lists her rooms' polls.
    assert "has been counted" in (await ask(ann, direct, "!vote P-1 1", bot))["content"]["body"]
    assert "Spend the grant" in (await ask(ann, direct, "!polls", bot))["content"]["body"]


async def test_a_third_person_ends_a_dm_and_the_bot_leaves(residents, bots):
    """A DM Ann made (as Element does) and one the bot made for Bob: each stops being one the
    moment someone else is invited or joins; the bot says so and leaves."""
    ann, bob, cat = await residents("ann"), await residents("bob"), await residents("cat")
    bot = await bots()
    street = await room_with_bot(ann, bot, bob, cat)
    ann.mark()
    await ann.send_text(street, "!poll Spend the grant on? | Benches | Planters | secret")
    await ann.wait_for(street, is_notice_from(bot.user_id, "Secret ballot"))

    own = await ann.create_room(invite=[bot.user_id], is_direct=True, preset="trusted_private_chat")
    ann.mark()
    await ann.wait_for(own, is_notice_from(bot.user_id, "Hello"), timeout=30)
    assert await passes_dm_rule(ann, own, bot)
    assert "has been counted" in (await ask(ann, own, "!vote P-1 1", bot))["content"]["body"]
    ann.mark()
    await ann.invite(own, cat.user_id)
    await ann.wait_for(own, is_notice_from(bot.user_id, NO_LONGER_PRIVATE[:40]))
    await ann.wait_for(own, bot_left(bot))
    assert await unrecorded(bot, ann, own)

    reply = await ask(bob, street, "!mydata", bot)
    assert reply["content"]["body"].startswith("I've sent you a direct message")
    made = await export_room(bob, bot, known=set())
    assert await passes_dm_rule(bob, made, bot)
    bob.mark()
    await bob.invite(made, cat.user_id)
    await cat.join(made)
    await bob.wait_for(made, is_notice_from(bot.user_id, NO_LONGER_PRIVATE[:40]))
    reply = await ask(bob, street, "!mydata", bot)
    assert reply["content"]["body"].startswith("I've sent you a direct message")
    fresh = await export_room(bob, bot, known=set())
    assert fresh != made
    assert await passes_dm_rule(bob, fresh, bot)
    # Made public: no longer private either.
    bob.mark()
    await bob.send_state(fresh, "m.room.join_rules", {"join_rule": "public"})
    await bob.wait_for(fresh, is_notice_from(bot.user_id, NO_LONGER_PRIVATE[:40]))
    await bob.wait_for(fresh, bot_left(bot))
    assert await unrecorded(bot, bob, fresh)


async def test_a_dm_from_before_the_record_counts_by_its_own_history(residents, bots):
    """A DM the bot joined or made before it kept m.direct (its record empty): the room's
    history (the creator's is_direct invite) makes it a DM again; a look-alike does not."""
    ann, eve = await residents("ann"), await residents("eve")
    bot = await bots()
    street = await room_with_bot(ann, bot, eve)
    ann.mark()
    await ann.send_text(street, "!poll Spend the grant on? | Benches | Planters | secret")
    await ann.wait_for(street, is_notice_from(bot.user_id, "Secret ballot"))
    own = await ann.create_room(invite=[bot.user_id], is_direct=True)
    ann.mark()
    await ann.wait_for(own, is_notice_from(bot.user_id, "Hello"), timeout=30)
    look_alike = await room_with_bot(ann, bot)  # two members, but not made as a DM
    await bot.stop()
    session = await Resident.login(bot.synapse.url, bot.user_id, PASSWORD)
    try:  # as an older civicbot left it: nothing recorded
        await session._request(
            "PUT",
            f"/_matrix/client/v3/user/{quote(bot.user_id, safe='')}/account_data/m.direct",
            {},
        )
    finally:
        await session.close()
    await bot.start()
    refusal = await ask(ann, look_alike, "!vote P-1 1", bot)
    assert "please don't vote here" in refusal["content"]["body"]
    assert "has been counted" in (await ask(ann, own, "!vote P-1 1", bot))["content"]["body"]
    assert own in (await bot_m_direct(bot)).get(ann.user_id, [])
    assert look_alike not in (await bot_m_direct(bot)).get(ann.user_id, [])


# -- the property: every private output path, every way a room can fail the rule --------------
# Each helper returns a room Bob and the bot are in that fails the rule in one way only; the bot
# is let in last, so it is in the room to hear the command (a DM it sees spoiled, it leaves).
async def _room_made_by_someone_else(bob, cat, eve, bot):
    room = await eve.create_room(invite=[bob.user_id], is_direct=True)
    await bob.join(room)
    await eve.invite(room, bot.user_id)
    eve.mark()
    await eve.wait_for(room, is_notice_from(bot.user_id, "Hello"), timeout=30)
    await eve.leave(room)
    return room


async def _public_room(bob, cat, eve, bot):
    room = await bob.create_room(invite=[bot.user_id], is_direct=True, preset="public_chat")
    bob.mark()
    await bob.wait_for(room, is_notice_from(bot.user_id, "Hello"), timeout=30)
    return room


async def _third_member_joined(bob, cat, eve, bot):
    room = await bob.create_room(invite=[cat.user_id], is_direct=True)
    await cat.join(room)
    await bob.invite(room, bot.user_id)
    bob.mark()
    await bob.wait_for(room, is_notice_from(bot.user_id, "Hello"), timeout=30)
    return room


async def _third_member_invited(bob, cat, eve, bot):
    room = await bob.create_room(invite=[bot.user_id, cat.user_id], is_direct=True)
    bob.mark()
    await bob.wait_for(room, is_notice_from(bot.user_id, "Hello"), timeout=30)
    return room


BAD_ROOMS = {
    "made by someone else": _room_made_by_someone_else,
    "public": _public_room,
    "a third member joined": _third_member_joined,
    "a third member invited": _third_member_invited,
}
PATHS = {
    "export": "!mydata",
    "secret vote receipt": "!vote P-1 1",
    "forget report": "!forget me",
}


async def join_invites_from(person: Resident, bot: BotProcess) -> None:
    while True:
        try:
            room = await person.wait_for_invite_from(bot.user_id, timeout=1)
        except TimeoutError:
            return
        await person.join(room)


async def test_no_private_output_path_reaches_a_room_that_fails_the_dm_rule(residents, bots):
    """For each private output path and each way a room fails the rule: typed there, nothing
    private lands there (the person gets the short line, or a refusal), and every room private
    output did land in passes the rule. Last, a DM a third person joined afterwards is never
    used again."""
    bob, cat, eve = await residents("bob"), await residents("cat"), await residents("eve")
    bot = await bots(limits=NO_FLOOD_LIMITS)
    street = await room_with_bot(eve, bot, bob, cat)
    eve.mark()
    await eve.send_text(street, "!poll Spend the grant on? | Benches | Planters | secret")
    await eve.wait_for(street, is_notice_from(bot.user_id, "Secret ballot"))
    bad: list[str] = []
    for kind, make in BAD_ROOMS.items():
        room = await make(bob, cat, eve, bot)
        bad.append(room)
        assert not await passes_dm_rule(bob, room, bot), kind
        for path, command in PATHS.items():
            bob.mark()
            await bob.send_text(room, command)
            said = await settle(bob, room, bot)
            assert said, (kind, path)  # a short line or a refusal, never silence
            assert not [e for e in said if private_output(bot.user_id, e)], (kind, path)
        assert await private_messages_in(bob, room, bot.user_id) == [], kind
    await join_invites_from(bob, bot)
    joined = await bob._request("GET", "/_matrix/client/v3/joined_rooms")
    landed = [
        room
        for room in joined["joined_rooms"]
        if room not in bad and await private_messages_in(bob, room, bot.user_id)
    ]
    assert len(landed) >= 3  # a new DM after each "!forget me" dropped the last one
    for room in landed:  # what the rule asks of the room itself, then and now
        problem = dm_problem(await bob.room_state(room), bot.user_id, bob.user_id, True)
        assert problem is None, (room, problem)

    # A third person joins a DM afterwards: it is never used again.
    reply = await ask(bob, street, "!mydata", bot)
    assert reply["content"]["body"].startswith("I've sent you a direct message")
    await join_invites_from(bob, bot)
    (current,) = (await bot_m_direct(bot))[bob.user_id]
    before = await private_messages_in(bob, current, bot.user_id)
    bob.mark()
    await bob.invite(current, cat.user_id)
    await cat.join(current)
    await bob.wait_for(current, is_notice_from(bot.user_id, NO_LONGER_PRIVATE[:40]))
    for command in ("!mydata", "!forget me"):
        await ask(bob, street, command, bot)
    assert await private_messages_in(bob, current, bot.user_id) == before
    assert current not in (await bot_m_direct(bot)).get(bob.user_id, [])
