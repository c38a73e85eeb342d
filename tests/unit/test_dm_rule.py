"""The DM rule (DESIGN.md §3) as a property: a room passes only when every condition holds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from civicbot.transport.direct import dm_problem

BOT, ME, EVE, SAM = "@civicbot:hs", "@me:hs", "@eve:hs", "@sam:hs"
PEOPLE = (BOT, ME, EVE, SAM)
MEMBERSHIPS = ("join", "invite", "leave", "ban", "knock")


def state(join_rule, creator, extra_creators, memberships):
    events = [
        {
            "type": "m.room.create",
            "state_key": "",
            "sender": creator,
            "content": {"room_version": "12", "additional_creators": list(extra_creators)},
        },
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": join_rule}},
    ]
    for user, membership in memberships.items():
        events.append(
            {
                "type": "m.room.member",
                "state_key": user,
                "sender": user,
                "content": {"membership": membership},
            }
        )
    return events


@given(
    join_rule=st.sampled_from(("invite", "public", "knock", "restricted", "private")),
    creator=st.sampled_from(PEOPLE),
    extra=st.lists(st.sampled_from(PEOPLE), max_size=2),
    memberships=st.dictionaries(st.sampled_from(PEOPLE), st.sampled_from(MEMBERSHIPS)),
    recorded=st.booleans(),
)
def test_a_room_is_my_dm_exactly_when_every_condition_holds(
    join_rule, creator, extra, memberships, recorded
):
    present = {u for u, m in memberships.items() if m in ("join", "invite")}
    expected = (
        join_rule == "invite"
        and present == {BOT, ME}
        and creator in (BOT, ME)
        and set(extra) <= {BOT, ME}
        and recorded
    )
    problem = dm_problem(state(join_rule, creator, extra, memberships), BOT, ME, recorded)
    assert (problem is None) == expected, problem


def test_each_way_of_failing_is_named():
    good = {BOT: "join", ME: "join"}
    assert dm_problem(state("invite", BOT, [], good), BOT, ME, True) is None
    assert (
        dm_problem(state("invite", ME, [BOT], {BOT: "join", ME: "invite"}), BOT, ME, True) is None
    )
    cases = {
        "the room is not invite-only": state("public", ME, [], good),
        "someone else created the room": state("invite", EVE, [], good),
        "someone else is in the room": state("invite", BOT, [], {**good, SAM: "invite"}),
    }
    for reason, room in cases.items():
        assert dm_problem(room, BOT, ME, True) == reason
    assert dm_problem(state("invite", BOT, [EVE], good), BOT, ME, True) == (
        "someone else created the room"
    )
    # A third person who joined and left again is gone: the room may be a DM once more.
    assert dm_problem(state("invite", BOT, [], {**good, SAM: "leave"}), BOT, ME, True) is None
    assert dm_problem(state("invite", BOT, [], good), BOT, ME, False) == (
        "the room was not made as a direct chat"
    )
    assert dm_problem(state("invite", BOT, [], {BOT: "join"}), BOT, BOT, True) == "not a person"


class CountingApi:
    """The homeserver's answers for one group room, counting each fetch of its state."""

    def __init__(self, room_state):
        self.room_state = room_state
        self.state_fetches = 0

    async def request(self, method, path, body=None):
        return {}  # no m.direct recorded

    async def request_list(self, path):
        self.state_fetches += 1
        return self.room_state


async def test_a_group_room_is_found_not_direct_once_until_its_state_changes(tmp_path):
    from civicbot.core.events import Event
    from civicbot.storage.database import Database
    from civicbot.transport.direct import DirectChats

    group = state("invite", EVE, [], {BOT: "join", ME: "join", EVE: "join"})
    api = CountingApi(group)
    db = await Database.open(tmp_path / "db.sqlite3")
    try:
        chats = DirectChats(None, api, db, BOT)  # type: ignore[arg-type]
        for _ in range(5):  # five `!need`s typed in the group room
            assert not await chats.is_direct_with("!group:hs", ME)
        assert api.state_fetches == 1

        # Eve leaves: the room's state changed, so the next question goes to the homeserver.
        api.room_state = state("invite", ME, [], {BOT: "join", ME: "join", EVE: "leave"})
        leave = Event.from_raw(
            {
                "event_id": "$leave",
                "sender": EVE,
                "type": "m.room.member",
                "state_key": EVE,
                "content": {"membership": "leave"},
                "origin_server_ts": 1,
            },
            "!group:hs",
        )

        async def never(*args):
            raise AssertionError("not a recorded DM: nothing to say or leave")

        await chats.watch([leave], never, never)
        await chats.is_direct_with("!group:hs", ME)
        assert api.state_fetches == 2
    finally:
        await db.close()


class RecordedDmApi(CountingApi):
    """A homeserver where the bot's m.direct records ``!dm:hs`` as its DM with ME."""

    async def request(self, method, path, body=None):
        return {ME: ["!dm:hs"]}


async def test_only_a_join_rules_state_event_makes_a_dm_public(tmp_path):
    from civicbot.core.events import Event
    from civicbot.storage.database import Database
    from civicbot.transport.direct import DirectChats

    db = await Database.open(tmp_path / "db.sqlite3")
    said: list[str] = []

    async def send(room_id, message, txn_id):
        said.append(room_id)
        return "$said"

    async def leave(room_id):
        said.append(f"left {room_id}")

    def rules(content, **state):
        raw = {"event_id": "$r", "sender": ME, "type": "m.room.join_rules", "content": content}
        return Event.from_raw({**raw, **state, "origin_server_ts": 1}, "!dm:hs")

    try:
        chats = DirectChats(None, RecordedDmApi(state("invite", ME, [], {})), db, BOT)  # type: ignore[arg-type]
        # A message event of that type (no state key), whatever it carries, changes no rule.
        await chats.watch([rules({}), rules({"join_rule": "public"})], send, leave)
        assert said == []
        await chats.watch([rules({"join_rule": "public"}, state_key="")], send, leave)
        assert said == ["!dm:hs", "left !dm:hs"]
    finally:
        await db.close()
