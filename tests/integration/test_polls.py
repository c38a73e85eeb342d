"""Polls against a real Synapse: residents vote with exactly the events Element sends."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from urllib.parse import quote

from civicbot_plugins.polls.service import Response, tally_responses

from tests.integration.conftest import is_for, is_notice_from, room_with_bot
from tests.integration.test_once import RESULTS_POINTS, start_and_die_at

START = "org.matrix.msc3381.poll.start"
RESPONSE = "org.matrix.msc3381.poll.response"
END = "org.matrix.msc3381.poll.end"


def poll_start_from(bot_id: str):
    return lambda e: e.get("type") == START and e.get("sender") == bot_id


async def tap(resident, room: str, start_id: str, *answers: str) -> str:
    """What Element Web sends when someone taps a poll answer (or clears it)."""
    return await resident.send_event(
        room,
        RESPONSE,
        {
            "m.relates_to": {"rel_type": "m.reference", "event_id": start_id},
            RESPONSE: {"answers": list(answers)},
        },
    )


def client_count(relations: list[dict], answer_ids: list[str], bot_id: str) -> dict[str, int]:
    """What a client shows for these relations: the first valid end sets the cut-off."""
    ends = [e["origin_server_ts"] for e in relations if e["type"] == END and e["sender"] == bot_id]
    responses = [
        Response(e["sender"], e["content"][RESPONSE].get("answers"), e["origin_server_ts"])
        for e in relations
        if e["type"] == RESPONSE
    ]
    return tally_responses(responses, answer_ids, 1, min(ends) if ends else None).counts


async def test_three_residents_vote_change_withdraw_and_vote_late(residents, bots):
    ann, bob, cat = await residents("ann"), await residents("bob"), await residents("cat")
    bot = await bots()
    room = await room_with_bot(ann, bot, bob, cat)
    ann.mark()
    await ann.send_text(room, "!poll Which day for the litter pick? | Saturday | Sunday | Monday")
    announced = await ann.wait_for(room, is_notice_from(bot.user_id, "📊 P-1: Which day"))
    assert "1. Saturday\n2. Sunday\n3. Monday" in announced["content"]["body"]
    assert "Closes " in announced["content"]["body"]
    start = await ann.wait_for(room, poll_start_from(bot.user_id))
    assert start["content"][START]["answers"][0] == {
        "id": "1",
        "org.matrix.msc1767.text": "Saturday",
    }
    start_id = start["event_id"]

    await tap(ann, room, start_id, "1")
    await tap(bob, room, start_id, "2")
    await tap(cat, room, start_id, "2")
    await tap(bob, room, start_id, "1")  # Bob changes his mind
    await tap(cat, room, start_id)  # Cat withdraws (an empty answer list)
    await cat.send_text(room, "!vote P-1 3")  # ... and votes again by typing
    second_thoughts = await tap(ann, room, start_id, "3")
    await ann.redact(room, second_thoughts)  # a redacted vote stops counting: "1" is back
    await cat.wait_for(room, is_notice_from(bot.user_id, "your vote in P-1 is 3. Monday"))

    ann.mark()
    await ann.send_text(room, "!poll close P-1")
    results = await ann.wait_for(room, is_notice_from(bot.user_id, "Results of P-1"))
    body = results["content"]["body"]
    assert "Winner: Saturday." in body
    assert "1. Saturday: ███████░░░ 2 (67%)" in body
    assert "2. Sunday: ░░░░░░░░░░ 0 (0%)" in body
    assert "3. Monday: ███░░░░░░░ 1 (33%)" in body
    assert "Turnout: 3 people voted of 3 members (100%)." in body
    assert (
        results["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == (announced["event_id"])
    )

    await tap(bob, room, start_id, "3")  # after the end: no client counts it
    relations = await ann.relations(room, start_id, "m.reference")
    ends = [e for e in relations if e["type"] == END]
    assert len(ends) == 1 and ends[0]["sender"] == bot.user_id
    # The button votes, counted as a client counts them, agree with the bot (Cat's typed vote
    # is the one a client cannot see).
    assert client_count(relations, ["1", "2", "3"], bot.user_id) == {"1": 2, "2": 0, "3": 0}
    ann.mark()
    await ann.send_text(room, "!poll show P-1")
    shown = await ann.wait_for(room, is_notice_from(bot.user_id, "P-1 (closed)"))
    assert "1. Saturday: ███████░░░ 2 (67%)" in shown["content"]["body"]


async def test_a_restart_in_the_middle_of_voting_loses_nothing(residents, bots):
    ann, bob, cat = await residents("ann"), await residents("bob"), await residents("cat")
    bot = await bots()
    room = await room_with_bot(ann, bot, bob, cat)
    ann.mark()
    await ann.send_text(room, "!poll Paint the fence? | Green | Blue | closes in 2 days")
    start_id = (await ann.wait_for(room, poll_start_from(bot.user_id)))["event_id"]
    await tap(ann, room, start_id, "1")
    assert await bot.stop() == 0
    # While the bot is away: a button vote, a changed vote and a typed vote.
    await tap(bob, room, start_id, "1")
    await tap(ann, room, start_id, "2")
    cat.mark()
    await cat.send_text(room, "!vote P-1 2")
    await bot.start()
    await cat.wait_for(room, is_notice_from(bot.user_id, "your vote in P-1 is 2. Blue"))
    # Closed while the bot is away; it dies where the close is promised but the results not
    # posted, and where they are posted but not recorded (the outbox's crash points).
    assert await bot.stop() == 0
    ann.mark()
    await ann.send_text(room, "!poll close P-1")
    for point in RESULTS_POINTS:
        await start_and_die_at(bot, point)
    await bot.start()
    body = (await ann.wait_for(room, is_notice_from(bot.user_id, "Results of P-1")))["content"][
        "body"
    ]
    assert "Winner: Blue." in body
    assert "1. Green: ███░░░░░░░ 1 (33%)" in body
    assert "2. Blue: ███████░░░ 2 (67%)" in body
    await bot.caught_up()
    await ann.send_text(room, "!ping")
    await ann.wait_for(room, is_notice_from(bot.user_id, "Pong"))
    said = [e["content"].get("body", "") for e in await ann.messages(room, limit=100)]
    assert sum(b.startswith("📊 Results of P-1") for b in said) == 1, said
    path = bot.directory / "data" / "civicbot.sqlite3"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        state, results = db.execute("SELECT state, results_event_id FROM polls_polls").fetchone()
    assert state == "closed" and results  # and the close is recorded


async def test_secret_ballot_by_direct_message_keeps_no_voter_choice_link(residents, bots):
    ann, bob, cat = await residents("ann"), await residents("bob"), await residents("cat")
    bot = await bots()
    room = await room_with_bot(ann, bot, bob, cat)
    ann.mark()
    await ann.send_text(room, "!poll Spend the grant on? | Benches | Planters | secret")
    await ann.wait_for(room, is_notice_from(bot.user_id, "Secret ballot"))
    bob.mark()
    await bob.send_text(room, "!vote P-1 1")
    await bob.wait_for(room, is_notice_from(bot.user_id, "please don't vote here"))

    for resident, choice in ((bob, "2"), (cat, "2"), (ann, "1")):
        dm = await resident.create_room(invite=[bot.user_id], is_direct=True)
        resident.mark()
        await resident.wait_for(dm, is_notice_from(bot.user_id, "Hello"), timeout=30)
        await resident.send_text(dm, f"!vote P-1 {choice}")
        await resident.wait_for(dm, is_notice_from(bot.user_id, "has been counted"))

    ann.mark()
    await ann.send_text(room, "!poll close P-1")
    body = (await ann.wait_for(room, is_notice_from(bot.user_id, "Results of P-1")))["content"][
        "body"
    ]
    assert "Winner: Planters." in body
    assert "2. Planters: ███████░░░ 2 (67%)" in body
    assert bob.user_id not in body and cat.user_id not in body
    assert await bot.stop() == 0

    # Secret ballots live in the polls plugin's private store (see plugins/polls/secret.py and
    # civicbot/storage/private_store.py), the rest in the main database.
    db = sqlite3.connect(bot.directory / "data" / "civicbot.sqlite3")
    db.execute("ATTACH ? AS secret", (str(bot.directory / "data" / "private-polls.sqlite3"),))
    try:
        voters = db.execute("SELECT item, who FROM secret.private_participants").fetchall()
        assert sorted(voters) == sorted(("poll:1", r.user_id) for r in (ann, bob, cat))
        ballots = db.execute("SELECT * FROM secret.private_contributions").fetchall()
        assert len(ballots) == 3
        tables = [
            f"{schema}.{r[0]}"
            for schema in ("main", "secret")
            for r in db.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type='table'")
        ]
        for table in tables:
            schema, _, name = table.partition(".")
            columns = {r[1] for r in db.execute(f"PRAGMA {schema}.table_info({name})")}
            rows = db.execute(f"SELECT * FROM {table}").fetchall()
            names_voter = any(
                r.user_id in " ".join(map(str, row)) for row in rows for r in (bob, cat)
            )
            if names_voter:  # a table that knows a secret voter holds no choice at all
                assert not columns & {"answers", "choice", "reason", "payload"}, table
        assert db.execute("SELECT COUNT(*) FROM polls_responses").fetchone()[0] == 0
    finally:
        db.close()
    for line in bot.log_text().splitlines():
        if "secret" in line:
            assert bob.user_id not in line and cat.user_id not in line, line


async def test_a_vote_typed_in_another_room_is_not_counted_there(residents, bots):
    ann, bob, cat = await residents("ann"), await residents("bob"), await residents("cat")
    bot = await bots()
    room = await room_with_bot(ann, bot, bob, cat)
    ann.mark()
    await ann.send_text(room, "!poll Bins on Monday? | yes | no")
    await ann.wait_for(room, poll_start_from(bot.user_id))
    # Bob and Cat share another room with the bot: a vote typed there would be seen there.
    other = await room_with_bot(bob, bot, cat)
    bob.mark()
    await bob.send_text(other, "!vote P-1 2")
    refusal = await bob.wait_for(other, is_notice_from(bot.user_id, "P-1 is a poll in another"))
    assert "in a direct message" in refusal["content"]["body"]
    ann.mark()
    await ann.send_text(room, "!poll show P-1")
    shown = await ann.wait_for(room, is_notice_from(bot.user_id, "P-1 (open)"))
    assert "0 people have voted so far" in shown["content"]["body"]


async def fetch_event(resident, room: str, event_id: str) -> dict:
    """The event as a client loads it, with the server's bundled edit (``m.replace``)."""
    return await resident._request(
        "GET", f"/_matrix/client/v3/rooms/{quote(room, safe='')}/event/{quote(event_id, safe='')}"
    )


async def test_edit_replaces_the_poll_in_place_and_cancel_withdraws_it(residents, bots):
    ann, bob = await residents("ann"), await residents("bob")
    bot = await bots()
    room = await room_with_bot(ann, bot, bob)
    ann.mark()
    await ann.send_text(room, "!poll Which day? | Saturday | Sunday")
    announced = await ann.wait_for(room, is_notice_from(bot.user_id, "📊 P-1: Which day?"))
    start_id = (await ann.wait_for(room, poll_start_from(bot.user_id)))["event_id"]
    ann.mark()
    await ann.send_text(room, "!poll edit P-1 Which day for the pick? | Sat | Sun | Mon")
    await ann.wait_for(room, is_notice_from(bot.user_id, "P-1 is updated"))

    # The announcement is edited in place; Synapse bundles the edit with it, which is what
    # Element renders in its place, marked "(edited)".
    text = await fetch_event(bob, room, announced["event_id"])
    new_text = text["unsigned"]["m.relations"]["m.replace"]["content"]["m.new_content"]["body"]
    assert new_text.startswith("📊 P-1: Which day for the pick? (edited)\n1. Sat\n2. Sun\n3. Mon")
    # Element never re-reads an edited poll, so the buttons come as a new poll and the old one
    # is ended, saying why and linking to the new one.
    new_start = await ann.wait_for(
        room, lambda e: poll_start_from(bot.user_id)(e) and e["event_id"] != start_id
    )
    new_poll = new_start["content"][START]
    assert [a["org.matrix.msc1767.text"] for a in new_poll["answers"]] == ["Sat", "Sun", "Mon"]
    assert new_poll["question"]["org.matrix.msc1767.text"] == "Which day for the pick? (P-1)"
    ended = [e for e in await bob.relations(room, start_id, "m.reference") if e["type"] == END]
    assert len(ended) == 1 and new_start["event_id"] in ended[0]["content"]["body"]

    await tap(bob, room, new_start["event_id"], new_poll["answers"][2]["id"])  # Bob taps "Mon"
    await tap(ann, room, start_id, "1")  # a stale client taps the old, ended poll: not counted
    ann.mark()
    await ann.send_text(room, "!poll close P-1")
    body = (await ann.wait_for(room, is_notice_from(bot.user_id, "Results of P-1")))["content"][
        "body"
    ]
    assert "Winner: Mon." in body and "3. Mon: ██████████ 1 (100%)" in body

    # A second poll, with a vote, cancelled: no end (Element would show the counts), no result.
    ann.mark()
    await ann.send_text(room, "!poll Paint the fence? | Green | Blue")
    second = await ann.wait_for(room, is_notice_from(bot.user_id, "📊 P-2"))
    second_start = (await ann.wait_for(room, poll_start_from(bot.user_id)))["event_id"]
    await tap(bob, room, second_start, "1")
    bob.mark()
    await bob.send_text(room, "!poll cancel P-2")
    await bob.wait_for(room, is_notice_from(bot.user_id, "can cancel it"))
    ann.mark()
    await ann.send_text(room, "!poll cancel P-2")
    await ann.wait_for(room, is_notice_from(bot.user_id, "P-2 is cancelled"))
    removed = await fetch_event(bob, room, second_start)
    assert removed["content"] == {}  # redacted: Element shows "Message deleted"
    assert removed["unsigned"]["redacted_because"]["sender"] == bot.user_id
    relations = await bob.relations(room, second_start, "m.reference")
    assert not [e for e in relations if e["type"] == END]
    text = await fetch_event(bob, room, second["event_id"])
    cancelled = text["unsigned"]["m.relations"]["m.replace"]["content"]["m.new_content"]["body"]
    assert cancelled.startswith("📊 P-2 (cancelled): Paint the fence?")
    bob.mark()
    await bob.send_text(room, "!vote P-2 1")
    await bob.wait_for(room, is_notice_from(bot.user_id, "P-2 was cancelled"))
    messages = await bob.messages(room, limit=50)
    assert not any("Results of P-2" in str(m.get("content", {}).get("body", "")) for m in messages)


async def test_a_new_room_time_zone_changes_how_every_poll_shows(residents, bots):
    ann, bob = await residents("ann"), await residents("bob")
    bot = await bots()
    room = await room_with_bot(ann, bot, bob)
    ann.mark()
    await ann.send_text(room, "!poll Bins on Monday? | yes | no | closes in 3 days")
    announced = await ann.wait_for(room, is_notice_from(bot.user_id, "📊 P-1"))
    assert "Europe/London" in announced["content"]["body"]
    ann.mark()
    await ann.send_text(room, "!config room.timezone Europe/Paris")
    await ann.wait_for(room, is_notice_from(bot.user_id, "Europe/Paris"))
    for command, marker in (("!poll show P-1", "P-1 (open)"), ("!polls", "Open polls")):
        bob.mark()
        await bob.send_text(room, command)
        shown = (await bob.wait_for(room, is_notice_from(bot.user_id, marker)))["content"]["body"]
        assert "Europe/Paris" in shown and "Europe/London" not in shown, shown


async def test_a_block_pressed_with_the_button_is_asked_for_its_reason(residents, bots):
    """Issue 22 §4: Element's Block button recorded a block with no reason and no prompt,
    while a typed block must give one."""
    ann, bob = await residents("ann"), await residents("bob")
    bot = await bots()
    room = await room_with_bot(ann, bot, bob)
    ann.mark()
    await ann.send_text(room, "!poll Adopt the new bin rota? | proposal")
    start = await ann.wait_for(room, poll_start_from(bot.user_id))
    block = next(
        a["id"]
        for a in start["content"][START]["answers"]
        if a["org.matrix.msc1767.text"] == "Block"
    )
    await tap(bob, room, start["event_id"], block)
    dm = await bob.wait_for_invite_from(bot.user_id, exclude=[room], timeout=60)
    await bob.join(dm)
    asked = await bob.wait_for(dm, is_for(bot.user_id, bob.user_id, "You pressed Block on P-1"))
    assert "!vote P-1 block <your reason>" in asked["content"]["body"]
    ann.mark()
    await ann.send_text(room, "!poll show P-1")
    shown = await ann.wait_for(room, is_notice_from(bot.user_id, "P-1"))
    assert "(reason asked for)" in shown["content"]["body"]

    bob.mark()
    await bob.send_text(dm, "!vote P-1 block Nobody asked the night workers")
    await bob.wait_for(dm, is_notice_from(bot.user_id, "P-1"))
    ann.mark()
    await ann.send_text(room, "!poll close P-1")
    results = await ann.wait_for(room, is_notice_from(bot.user_id, "Results of P-1"))
    assert "Nobody asked the night workers" in results["content"]["body"]
    assert "reason asked for" not in results["content"]["body"]
