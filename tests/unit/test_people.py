"""People named by residents (``pick_people``) and named by the bot (``Rooms.person_name``)."""

from __future__ import annotations

from civicbot.core.botinfo import Rooms
from civicbot.core.text import pick_people
from civicbot.transport.fake import FakeTransport

NAMES = {"@resident1:hs": "Bea Jones", "@resident2:hs": "Cat Smith", "@cat:hs": ""}


def test_a_person_is_picked_by_id_short_name_or_display_name_in_any_case():
    assert pick_people("@resident2:hs", NAMES) == ["@resident2:hs"]
    assert pick_people("resident2", NAMES) == ["@resident2:hs"]
    assert pick_people("@Resident2", NAMES) == ["@resident2:hs"]
    assert pick_people("cat smith", NAMES) == ["@resident2:hs"]
    assert pick_people("“Bea Jones”", NAMES) == ["@resident1:hs"]


def test_a_name_that_is_ones_short_name_and_anothers_display_name_names_both():
    # Anyone can register @sam on a server of their own: "Sam" must not quietly pick them
    # over the neighbour the room shows as Sam, nor the other way round.
    names = {"@jo.smith:hs": "Sam", "@sam:evil.org": "Samantha"}
    assert sorted(pick_people("Sam", names)) == ["@jo.smith:hs", "@sam:evil.org"]
    assert pick_people("@sam:evil.org", names) == ["@sam:evil.org"]
    assert pick_people("jo.smith", names) == ["@jo.smith:hs"]


def test_a_whole_name_wins_over_the_start_of_another():
    assert pick_people("cat", NAMES) == ["@cat:hs"]  # not Cat Smith as well


def test_the_start_of_one_name_picks_it_and_of_several_picks_them_all():
    assert pick_people("bea", NAMES) == ["@resident1:hs"]
    assert sorted(pick_people("resident", NAMES)) == ["@resident1:hs", "@resident2:hs"]
    assert pick_people("re", NAMES) == []  # too short to be sure
    assert pick_people("dave", NAMES) == []
    assert pick_people("", NAMES) == []


async def test_a_person_is_named_by_their_display_name_else_their_short_name():
    transport = FakeTransport()
    transport.add_room("!r:hs", ["@ann:hs", "@bob:hs"])
    transport.rooms["!r:hs"].state[("m.room.member", "@ann:hs")] = {
        "membership": "join",
        "displayname": " Ann\u200b  Lee ",
    }
    rooms = Rooms(transport)
    assert await rooms.person_name("!r:hs", "@ann:hs") == "Ann Lee"
    assert await rooms.person_name("!r:hs", "@bob:hs") == "bob"
