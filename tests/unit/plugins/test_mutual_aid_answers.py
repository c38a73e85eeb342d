"""The requester's answers to offers of help, as typed: naming a helper among several, ``!done``
in the introduction room, and the helpers who were not chosen being told."""

from __future__ import annotations

from civicbot_plugins.mutual_aid.plugin import MutualAidPlugin

from civicbot.core.loader import discover
from civicbot.testing.harness import BotHarness

ANN, BOB, CAT = "@ann:test", "@resident1:test", "@resident2:test"


def harness(tmp_path):
    return BotHarness.create(
        tmp_path, {**discover(builtin_only=True), "mutual_aid": MutualAidPlugin}
    )


async def ask(h, room, who, text):
    await h.say(room, who, text)
    return h.last_text(room)


def shown_as(h, room, person, name):
    h.transport.rooms[room].state[("m.room.member", person)] = {
        "membership": "join",
        "displayname": name,
    }


async def two_helpers_waiting(h):
    room = h.room(members=[ANN, BOB, CAT])
    shown_as(h, room, BOB, "Bea Jones")
    shown_as(h, room, CAT, "Cat Smith")
    await ask(h, room, ANN, "!need a lift to the clinic")
    await ask(h, room, BOB, "!can N-1")
    await ask(h, room, CAT, "!can N-1")
    return room


async def test_the_requester_picks_a_helper_by_short_name(tmp_path):
    async with harness(tmp_path) as h:
        room = await two_helpers_waiting(h)
        assert "private chat" in await ask(h, room, ANN, "!accept N-1 resident2")
        (_, _, invited) = h.transport.created_rooms[-1]
        assert sorted(invited) == [ANN, CAT]


async def test_the_requester_picks_a_helper_by_display_name(tmp_path):
    async with harness(tmp_path) as h:
        room = await two_helpers_waiting(h)
        assert "private chat" in await ask(h, room, ANN, "!accept N-1 cat smith")
        (_, _, invited) = h.transport.created_rooms[-1]
        assert sorted(invited) == [ANN, CAT]


async def test_a_name_that_matches_nobody_lists_who_is_waiting(tmp_path):
    async with harness(tmp_path) as h:
        room = await two_helpers_waiting(h)
        # Typed in the room: who offered is the requester's to know, so the list goes by DM.
        said = await ask(h, room, ANN, "!accept N-1 dave")
        assert said == "I've sent you who is waiting on N-1 by direct message."
        ann_dm = await h.transport.direct_room(ANN)
        reply = h.last_text(ann_dm)
        assert reply.startswith("Nobody called “dave” is waiting for an answer on N-1")
        assert f"Bea Jones ({BOB}), Cat Smith ({CAT})" in reply  # two may show one name
        assert "!accept N-1 Bea Jones" in reply
        assert not any("Bea Jones" in t for t in h.texts(room))
        assert not h.transport.created_rooms
        declined = await ask(h, ann_dm, ANN, "!decline N-1 dave")
        assert "Bea Jones" in declined and "Cat Smith" in declined and "!decline N-1" in declined


async def test_an_ambiguous_name_lists_those_it_could_be(tmp_path):
    async with harness(tmp_path) as h:
        await two_helpers_waiting(h)
        reply = await ask(h, await h.transport.direct_room(ANN), ANN, "!accept N-1 resident")
        assert "could be more than one of them" in reply
        assert f"Bea Jones ({BOB}), Cat Smith ({CAT})" in reply
        assert not h.transport.created_rooms


async def test_a_helper_named_like_another_helpers_short_name_is_not_picked_by_it(tmp_path):
    """The impostor: the real helper shows as "Sam"; someone registers @sam elsewhere and
    offers too. "Sam" names both, so nobody is picked, and the bot's own instruction names
    the real helper by a name that picks only them."""
    async with harness(tmp_path) as h:
        sam = "@sam:evil.test"
        room = h.room(members=[ANN, BOB, sam])
        shown_as(h, room, BOB, "Sam")
        shown_as(h, room, sam, "Samantha")
        await ask(h, room, ANN, "!need a lift to the clinic")
        ann_dm = await h.transport.direct_room(ANN)
        await ask(h, room, sam, "!can N-1")
        await ask(h, room, BOB, "!can N-1")
        told = h.last_text(ann_dm)  # about Bob: "Sam" would name the impostor too
        assert f"`!accept N-1 {BOB}`" in told and "N-1 Sam`" not in told
        reply = await ask(h, ann_dm, ANN, "!accept N-1 Sam")
        assert "could be more than one of them" in reply and not h.transport.created_rooms
        assert "private chat" in await ask(h, ann_dm, ANN, f"!accept N-1 {BOB}")
        (_, _, invited) = h.transport.created_rooms[-1]
        assert sorted(invited) == sorted([ANN, BOB])


async def test_only_the_requester_learns_who_is_waiting(tmp_path):
    async with harness(tmp_path) as h:
        room = await two_helpers_waiting(h)
        dave = "@dave:test"
        h.transport.rooms[room].members.append(dave)
        reply = await ask(h, room, dave, "!accept N-1 nobody")
        assert "Only the person who asked for N-1" in reply and "Bea" not in reply


async def test_done_in_the_introduction_room_as_it_says(tmp_path):
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        ann_dm = await h.transport.direct_room(ANN)
        await ask(h, ann_dm, ANN, "!need a lift to the clinic | room: 1")
        await ask(h, room, BOB, "!can N-1")
        assert "private chat" in await ask(h, ann_dm, ANN, "!accept N-1")
        (intro, _, _) = h.transport.created_rooms[-1]
        assert "!done N-1" in h.last_text(intro)
        assert "Only the person who asked" in await ask(h, intro, BOB, "!done N-1")
        assert "N-1 is done" in await ask(h, intro, ANN, "!done N-1 thanks")
        assert h.texts(room)[-1] == "Thank you to the neighbour who helped with N-1!"


async def test_the_introduction_room_is_no_exception_once_someone_else_is_in_it(tmp_path):
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        ann_dm = await h.transport.direct_room(ANN)
        await ask(h, ann_dm, ANN, "!need a lift to the clinic | room: 1")
        await ask(h, room, BOB, "!can N-1")
        await ask(h, ann_dm, ANN, "!accept N-1")
        (intro, _, _) = h.transport.created_rooms[-1]
        h.transport.rooms[intro].members.append(CAT)
        assert "asked privately" in await ask(h, intro, ANN, "!done N-1")


async def test_hours_where_there_is_no_timebank_says_so(tmp_path):
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        reply = await ask(h, room, ANN, "!hours")
        assert reply.startswith("The timebank is not on in this room")
        assert "!config mutual_aid.timebank true" in reply
        ann_dm = await h.transport.direct_room(ANN)
        assert "No timebank hours are recorded for you yet" in await ask(h, ann_dm, ANN, "!hours")


async def test_hours_in_a_timebank_room_come_by_dm(tmp_path):
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, "@mod:test", "!config mutual_aid.timebank true")
        await ask(h, room, ANN, "!need a lift to the clinic")
        await ask(h, room, BOB, "!can N-1")
        await ask(h, room, ANN, "!accept N-1")
        assert "2h recorded" in await ask(h, room, ANN, "!done N-1 2h")
        assert "direct message" in await ask(h, room, BOB, "!hours")
        assert "you gave 2h" in h.last_text(await h.transport.direct_room(BOB))


def told(h, dm, words):
    return [t for t in h.texts(dm) if words in t]


async def test_helpers_not_chosen_are_thanked_once(tmp_path):
    async with harness(tmp_path) as h:
        room = await two_helpers_waiting(h)
        dave = "@dave:test"
        h.transport.rooms[room].members.append(dave)
        await ask(h, room, dave, "!can N-1")
        assert "private chat" in await ask(h, room, ANN, "!accept N-1 Cat Smith")
        for helper in (BOB, dave):
            dm = await h.transport.direct_room(helper)
            notes = told(h, dm, "accepted another neighbour's offer")
            assert len(notes) == 1 and "N-1" in notes[0]
        cat_dm = await h.transport.direct_room(CAT)
        assert not told(h, cat_dm, "another neighbour")
        await h.restart()
        await ask(h, room, ANN, "!done N-1")
        bob_dm = await h.transport.direct_room(BOB)
        assert len(told(h, bob_dm, "Thank you for offering")) == 1  # not again at done


async def test_a_need_done_or_withdrawn_thanks_those_still_waiting(tmp_path):
    async with harness(tmp_path) as h:
        room = await two_helpers_waiting(h)
        assert "N-1 is done" in await ask(h, room, ANN, "!done N-1")
        for helper in (BOB, CAT):
            dm = await h.transport.direct_room(helper)
            assert len(told(h, dm, "It has been sorted")) == 1
        await ask(h, room, ANN, "!need a hand with the shopping")
        await ask(h, room, BOB, "!can N-2")
        assert "withdrawn" in await ask(h, room, ANN, "!withdraw N-2")
        bob_dm = await h.transport.direct_room(BOB)
        assert len(told(h, bob_dm, "N-2 was withdrawn by the person who asked")) == 1


async def test_a_second_offer_says_how_to_pick_it(tmp_path):
    async with harness(tmp_path) as h:
        await two_helpers_waiting(h)
        asked = h.last_text(await h.transport.direct_room(ANN))
        assert asked.startswith(f"{CAT} offers to help with N-1")
        assert "2 neighbours have offered now" in asked
        assert "`!accept N-1 Cat Smith`" in asked and "`!decline N-1 Cat Smith`" in asked
