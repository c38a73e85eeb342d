"""Issue 19, fast tier: the attacks of an operator holding copies of ``data_dir``, played against
the engine (every plugin gets these guarantees): the private store under copies taken at every
write and in pairs, DM metadata in the core, coarse times and fixed thresholds.

The integration tier (``tests/integration/test_privacy_by_construction.py``) plays the same join
against the real bot and Synapse.
"""

from __future__ import annotations

import itertools
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from civicbot.core.events import Event, EventKind
from civicbot.storage.database import Database
from civicbot.storage.private_store import PrivateStore, coarse_time
from civicbot.storage.secret_key import keyed_hasher
from civicbot.testing.forensics import linkable, merge, page_images, pair_links, snapshot
from civicbot.transport.sync import SyncReader

PEOPLE = [f"@{name}:test" for name in ("kim", "ann", "zed", "bob", "lou", "cat", "dan", "eve")]
CHOICES = ['["a"]', '["b"]', '["c"]']


async def cast_all(tmp_path: Path, batch: int, monkeypatch) -> list[dict[str, bytes]]:
    """Eight people take part in one item, in an order that is neither alphabetical nor random;
    the files are copied after every write and mid-commit (before and after each transaction,
    together: what a copy catching the journal can hold). Returns every copy."""
    main = await Database.open(tmp_path / "civicbot.sqlite3")
    store = PrivateStore(main, "survey")
    copies: list[dict[str, bytes]] = []
    mid_commit: list[list[str]] = []
    original = Database.transaction

    @asynccontextmanager
    async def watched(self):
        before = snapshot(tmp_path)
        async with original(self) as db:
            yield db
        if self is store._db:
            after = snapshot(tmp_path)
            copies.append(after)
            mid_commit.append(
                linkable(
                    merge(page_images(before), page_images(after)),
                    PEOPLE,
                    [c.encode() for c in CHOICES],
                )
            )

    monkeypatch.setattr(Database, "transaction", watched)
    for n, who in enumerate(PEOPLE):
        status = await store.take_part("item:1", who, CHOICES[n % 3], batch=batch)
        assert status == "taken"
        copies.append(snapshot(tmp_path))
    await store.seal("item:1", batch)
    copies.append(snapshot(tmp_path))
    assert sorted(await store.contributions("item:1")) == sorted(
        CHOICES[n % 3] for n in range(len(PEOPLE))
    )
    assert await store.count("item:1") == len(PEOPLE)
    monkeypatch.undo()
    await store.close()
    await main.close()
    assert all(found == [] for found in mid_commit), mid_commit
    return copies


def links_in(copies: list[dict[str, bytes]], scratch: Path) -> list[tuple[str, str]]:
    """The reconstruction attack on every pair of copies (each a "before" and an "after")."""
    found: set[tuple[str, str]] = set()
    for before, after in itertools.combinations(copies, 2):
        found |= set(pair_links(before, after, "private-survey.sqlite3", scratch))
    return sorted(found)


async def test_the_pair_attack_finds_one_by_one_writes(tmp_path, monkeypatch):
    """The detector must work: with batches of one, a pair of copies around a write shows one
    person counted and one answer arriving."""
    copies = await cast_all(tmp_path, 1, monkeypatch)
    assert links_in(copies, tmp_path / "scratch")


async def test_no_copy_and_no_pair_of_copies_links_anyone_to_what_they_said(tmp_path, monkeypatch):
    copies = await cast_all(tmp_path, 3, monkeypatch)
    assert len(copies) > 20
    assert links_in(copies, tmp_path / "scratch") == []


async def test_a_stop_loses_only_what_waited_and_says_whom_to_ask(tmp_path):
    main = await Database.open(tmp_path / "civicbot.sqlite3")
    store = PrivateStore(main, "survey")
    for who in PEOPLE[:7]:  # 6 wait → 3 written; 4 wait when the bot stops
        await store.take_part("item:1", who, '["a"]', batch=3)
    await store.close()
    again = PrivateStore(main, "survey")
    lost = await again.recover()
    assert len(lost) == 4 and {x.who for x in lost} < set(PEOPLE[:7])
    assert await again.count("item:1") == 3
    assert len(await again.contributions("item:1")) == 3
    for x in lost:  # they may answer again
        assert await again.take_part("item:1", x.who, '["b"]', batch=3) == "taken"
    assert await again.recover() == []
    await again.close()
    await main.close()


async def test_a_replay_is_recognised_and_a_second_answer_refused(tmp_path):
    main = await Database.open(tmp_path / "civicbot.sqlite3")
    store = PrivateStore(main, "survey")
    assert await store.take_part("i", PEOPLE[0], "x", batch=2, receipt="r1") == "taken"
    assert await store.take_part("i", PEOPLE[0], "x", batch=2, receipt="r1") == "same"
    assert await store.take_part("i", PEOPLE[0], "y", batch=2, receipt="r2") == "already"
    await store.close()
    await main.close()


async def test_a_private_room_leaves_no_time_and_no_clear_id_in_the_sync_marks(tmp_path):
    """Issue 19 §1: ``room_last:<room>`` = ts|event_id for a DM named, by its time, who wrote
    the private need that came in that second. A private room's mark now holds neither."""
    db = await Database.open(tmp_path / "civicbot.sqlite3")
    reader = SyncReader("@bot:test", db, FakeApi([]))
    reader.keyed_hash = keyed_hasher(b"k" * 32)
    dm, public = "!dm-kim:test", "!street:test"
    reader.private_room = lambda room_id: room_id == dm
    events = [
        Event("$kim-need", dm, "@kim:test", EventKind.MESSAGE, "m.room.message", 1_700_000_123_456),
        Event(
            "$offer", public, "@ann:test", EventKind.MESSAGE, "m.room.message", 1_700_000_124_000
        ),
    ]
    await reader.save_position("s1", events)
    rows = dict(await db.fetchall("SELECT key, value FROM core_kv"))
    assert rows[f"room_last:{public}"] == "1700000124000|$offer"  # a public room keeps its time
    everything = " ".join(f"{k} {v}" for k, v in rows.items())
    for trace in (dm, "$kim-need", "1700000123", "kim"):
        assert trace not in everything, trace
    # The mark still ends a page-back over a gap in the DM: at its own event.
    reader._api = FakeApi(
        [
            {"event_id": "$later", "origin_server_ts": 5, "type": "m.room.message"},
            {"event_id": "$kim-need", "origin_server_ts": 4, "type": "m.room.message"},
            {"event_id": "$older", "origin_server_ts": 3, "type": "m.room.message"},
        ]
    )
    assert [e["event_id"] for e in await reader._fill_gap(dm, "token")] == ["$later"]
    await db.close()


def test_private_items_keep_the_day_not_the_second():
    at = datetime(2026, 12, 6, 17, 42, 13, 123456, tzinfo=UTC)
    assert coarse_time(at) == datetime(2026, 12, 6, tzinfo=UTC)
    assert coarse_time(at + timedelta(hours=5)) == datetime(2026, 12, 6, 22, 42, tzinfo=UTC) - (
        timedelta(hours=22, minutes=42)
    )


async def test_a_private_need_keeps_its_day_only(tmp_path):
    from tests.unit.plugins.mutual_aid_support import NOW, open_store, post

    db, store, _ = await open_store(tmp_path / "civicbot.sqlite3")
    later = NOW + timedelta(hours=3, minutes=17, seconds=9)
    need = await post(store, "need", "someone to talk to", private=True, now=later)
    offer = await post(store, "offer", "a ladder to lend", now=later)
    assert need.created_at == coarse_time(later) and need.updated_at == coarse_time(later)
    assert need.expires_at > later + timedelta(days=13)  # rounded up, never cut short
    assert offer.created_at == later  # a public post keeps its time
    await db.close()


@pytest.mark.parametrize("lowered", [1, 2])
async def test_a_secret_threshold_cannot_be_lowered_after_the_poll_opened(tmp_path, lowered):
    from tests.unit.plugins.polls_support import ANN, BOB, dm_room, polls_harness

    async with polls_harness(tmp_path, plugins={"polls": {"min_secret_voters": 3}}) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Spend the grant on? | Benches | Planters | secret")
        await h.say(dm_room(h, BOB), BOB, "!vote P-1 2")
        await h.bot.room_settings.set(room, "polls", "min_secret_voters", lowered, ANN)
        await h.say(room, ANN, "!poll close P-1")
        result = h.last_text(room)
        assert "Fewer than 3 people voted, so only the turnout is published" in result
        assert "Planters: █" not in result


async def test_a_consultation_threshold_cannot_be_lowered_after_it_opened(tmp_path):
    from tests.unit.plugins.consultations_support import (
        ANN,
        CLLR,
        consult_harness,
        council_room,
        park,
    )

    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park("private"))
        await h.say(room, ANN, "!answer C-1 2 a")
        await h.bot.room_settings.set(room, "consultations", "counts_minimum", 1, CLLR)
        await h.say(room, CLLR, "!consult close C-1")
        summary = next(t for t in h.texts(room) if t.startswith("📊 Summary of C-1"))
        assert "Benches: 1" not in summary


class FakeApi:
    """One page of ``/messages``, newest first, as the homeserver pages back."""

    def __init__(self, chunk: list[dict]):
        self.chunk = chunk

    async def request(self, method: str, path: str, body=None):
        return {"chunk": self.chunk, "end": None}


async def test_whom_to_ask_again_survives_a_second_stop_until_they_were_told(tmp_path):
    main = await Database.open(tmp_path / "civicbot.sqlite3")
    store = PrivateStore(main, "survey")
    await store.take_part("item:1", PEOPLE[0], "x", batch=3)
    await store.close()
    for _ in range(2):  # stopped again before anyone was told
        store = PrivateStore(main, "survey")
        assert [x.who for x in await store.recover()] == [PEOPLE[0]]
        assert not await store.took_part("item:1", PEOPLE[0])
        assert await store.count("item:1") == 0
        await store.close()
    store = PrivateStore(main, "survey")
    await store.asked_again(await store.recover())
    assert await store.recover() == []
    await store.close()
    await main.close()


async def test_a_banned_moderator_keeps_no_power_anywhere(tmp_path):
    """Issue 19 §4: roles and power levels count only while their holder is in the room,
    checked by the engine for every plugin (a DM command names the room, the check is here)."""
    from civicbot.policy.roles import Role
    from civicbot.testing.harness import MODERATOR
    from tests.unit.plugins.polls_support import ANN, polls_harness

    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN])
        permissions = h.bot.permissions
        assert await permissions.has(room, MODERATOR, Role.MODERATOR)
        assert await permissions.may_ping_room(room, MODERATOR)
        h.transport.rooms[room].members.remove(MODERATOR)  # banned
        assert not await permissions.has(room, MODERATOR, Role.MODERATOR)
        assert not await permissions.has(room, MODERATOR, Role.ADMIN)
        assert not await permissions.may_ping_room(room, MODERATOR)


# -- where a private need may go (issue 19 §2, issue 22 §2) -------------------------------------
def _made(h, room: str, days_ago: float, space: bool = False) -> None:
    create = h.transport.rooms[room].create
    create["origin_server_ts"] = int((h.clock.now().timestamp() - days_ago * 86400) * 1000)
    if space:
        create["content"]["type"] = "m.space"


async def test_a_fresh_look_alike_room_never_receives_a_private_need(tmp_path):
    from tests.unit.plugins.test_mutual_aid_plugin import ANN, BOB, CAT, ask, dm, harness

    async with harness(tmp_path) as h:
        real, fake = h.room(members=[ANN, BOB]), h.room(members=[ANN, CAT])
        _made(h, real, 200)
        _made(h, fake, 0.01)  # made a minute ago by a neighbour, named like the real one
        await ask(h, fake, CAT, "!needs")  # the attacker's room in use, as in the attack
        ann_dm = await dm(h, ANN)
        # "room: 2" (the look-alike, in the attack's list) names no room that may take it.
        refused = await ask(h, ann_dm, ANN, "!need someone to talk to | room: 2")
        assert refused.startswith("Is this the room to post it in? Nothing is posted")
        assert fake not in refused and real in refused
        assert refused.endswith("\n!need someone to talk to | room: 1")  # the line, corrected
        # One room could take it: still nothing is posted until Ann says it is the one.
        asked = await ask(h, ann_dm, ANN, "!need someone to talk to")
        assert asked.startswith("Is this the room to post it in? Nothing is posted until you")
        assert real in asked and fake not in asked and "made 6 months ago" in asked
        assert not any("someone to talk to" in t for t in h.texts(real) + h.texts(fake))
        posted = await ask(h, ann_dm, ANN, asked.splitlines()[-1])  # the line to copy
        assert posted.startswith("N-1 is posted in the room")
        assert "A neighbour needs: someone to talk to" in h.last_text(real)
        assert not any("someone to talk to" in t for t in h.texts(fake))
        # Its moderators (its maker) can opt in: then it is offered, beside the real room, and
        # nothing is posted until the person chooses.
        await h.bot.room_settings.set(fake, "mutual_aid", "accepts_private_needs", True, CAT)
        question = await ask(h, await dm(h, ANN), ANN, "!need a lift")
        assert question.startswith("Which room should I post it in? Nothing is posted")
        assert "made today" in question and fake in question and real in question
        assert not any("a lift" in t for t in h.texts(fake) + h.texts(real))


async def test_an_old_room_the_bot_was_just_brought_into_is_not_offered_unasked(tmp_path):
    """A look-alike made long ago (or an old room of the attacker's) with the bot invited today:
    the room's age tells nothing, the bot's own stay does. Each room also says how long the
    person has been in it, which tells the room they know from one they were just pulled into."""
    from tests.unit.plugins.test_mutual_aid_plugin import ANN, BOB, CAT, ask, dm, harness

    async with harness(tmp_path) as h:
        real, fake = h.room(members=[ANN, BOB]), h.room(members=[ANN, CAT])
        _made(h, real, 400)
        _made(h, fake, 400)
        ms = lambda days: int((h.clock.now().timestamp() - days * 86400) * 1000)  # noqa: E731
        bot = h.transport.user_id
        h.transport.rooms[real].joined_at.update({bot: ms(300), ANN: ms(90)})
        h.transport.rooms[fake].joined_at.update({bot: ms(0.01), ANN: ms(0.01)})
        ann_dm = await dm(h, ANN)
        asked = await ask(h, ann_dm, ANN, "!need someone to talk to")
        assert real in asked and fake not in asked
        assert "made 13 months ago" in asked and "you joined 3 months ago" in asked
        await h.bot.room_settings.set(fake, "mutual_aid", "accepts_private_needs", True, CAT)
        asked = await ask(h, ann_dm, ANN, "!need someone to talk to")
        assert asked.startswith("Which room should I post it in?")
        assert "you joined today" in asked and "you joined 3 months ago" in asked
        assert not any("someone to talk to" in t for t in h.texts(real) + h.texts(fake))


async def test_spaces_introduction_rooms_and_rooms_of_two_never_take_a_private_need(tmp_path):
    from tests.unit.plugins.test_mutual_aid_plugin import ANN, BOB, CAT, ask, dm, harness

    async with harness(tmp_path) as h:
        street = h.room(members=[ANN, BOB, CAT])
        space = h.room(members=[ANN, BOB])
        _made(h, street, 100)
        _made(h, space, 100, space=True)
        pair = h.room(members=[])  # the bot, the moderator: and Ann joins it below
        h.transport.rooms[pair].members = [ANN, h.transport.user_id]
        ann_dm = await dm(h, ANN)
        posted = await ask(h, ann_dm, ANN, "!need a lift to the station | room: 1")
        assert posted.startswith("N-1 is")
        await ask(h, street, BOB, "!can N-1")
        await ask(h, ann_dm, ANN, "!accept N-1")
        intro = [r for r, _, _ in h.transport.created_rooms]
        assert intro, "an introduction room was made"
        asked = await ask(h, ann_dm, ANN, "!need someone to talk to")
        assert asked.count(" people") == 1  # one room could take it: the street
        posted = await ask(h, ann_dm, ANN, "!need someone to talk to | room: 1")
        assert posted.startswith("N-2 is posted in the room")
        assert "someone to talk to" in h.last_text(street)
        for room in (space, pair, *intro):
            assert not any("someone to talk to" in t for t in h.texts(room)), room


async def test_a_need_that_cannot_be_posted_is_told_and_leaves_nothing_behind(tmp_path):
    from tests.unit.plugins.test_mutual_aid_plugin import ANN, BOB, ask, dm, harness

    async with harness(tmp_path) as h:
        street = h.room(members=[ANN, BOB])
        ann_dm = await dm(h, ANN)
        h.transport.fail_sends = 1  # the homeserver refuses the post (M_FORBIDDEN in a space)
        reply = await ask(h, ann_dm, ANN, "!need a lift to the station | room: 1")
        assert "I couldn't post that" in reply and "nothing was saved" in reply
        assert not any("a lift" in t for t in h.texts(street))
        assert "a lift" not in await ask(h, ann_dm, ANN, "!mine")
        assert await h.db.fetchval("SELECT COUNT(*) FROM mutual_aid_posts") == 0


async def test_outsiders_learn_nothing_of_a_rooms_needs(tmp_path):
    from tests.unit.plugins.test_mutual_aid_plugin import ANN, BOB, ask, dm, harness

    async with harness(tmp_path) as h:
        street = h.room(members=[ANN, BOB])
        await ask(h, await dm(h, ANN), ANN, "!need a lift to the station | room: 1")
        outsider = "@eve:test"
        elsewhere = h.room(members=[outsider])
        eve_dm = await dm(h, outsider)
        missing = await ask(h, eve_dm, outsider, "!can N-99")
        for room in (eve_dm, elsewhere):
            assert await ask(h, room, outsider, "!can N-1") == missing.replace("N-99", "N-1")
            reply = await ask(h, room, outsider, "!report N-1 spam")
            assert reply == missing.replace("N-99", "N-1")
        assert "N-1" in await ask(h, street, BOB, "!needs")  # a member still sees and acts
        assert "asked the person who needs N-1" in await ask(h, street, BOB, "!can N-1")


async def test_the_requester_typing_in_the_room_gets_what_anyone_would(tmp_path):
    """Issue 19 §4, the reply oracle: an edit, a second `!can`, `!can` on a matched need."""
    from tests.unit.plugins.test_mutual_aid_plugin import ANN, BOB, CAT, ask, dm, harness

    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        ann_dm = await dm(h, ANN)
        await ask(h, ann_dm, ANN, "!need a lift to the station | room: 1")
        for command in ("!need N-1 | a lift to the shops", "!can N-1"):
            first = await ask(h, room, ANN, command)
            assert first == await ask(h, room, CAT, command), command
        await ask(h, ann_dm, ANN, "!accept N-1")  # Cat offered; Ann accepts: N-1 is matched
        assert await ask(h, room, ANN, "!can N-1") == await ask(h, room, BOB, "!can N-1")


async def test_a_declined_helper_cannot_offer_again_and_again(tmp_path):
    from tests.unit.plugins.test_mutual_aid_plugin import ANN, BOB, ask, dm, harness

    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        ann_dm = await dm(h, ANN)
        await ask(h, ann_dm, ANN, "!need a lift to the station | room: 1")
        await ask(h, room, BOB, "!can N-1")
        await ask(h, ann_dm, ANN, "!decline N-1")
        told = len(h.texts(ann_dm))
        for _ in range(10):
            await h.advance(timedelta(minutes=2))  # slower than the flood limit
            assert "already answered your offer" in await ask(h, room, BOB, "!can N-1")
        assert len(h.texts(ann_dm)) == told  # no more messages to the requester


async def test_no_log_pseudonym_is_shared_between_a_private_item_and_a_public_action(
    tmp_path, caplog
):
    """Issue 19 §4, the log join: "offer O-1 posted by <private:X>" and "need N-2 posted by
    <private:X>" named the requester. Private items are logged with no pseudonym at all."""
    import logging
    import re

    from tests.unit.plugins.polls_support import dm_room, polls_harness
    from tests.unit.plugins.test_mutual_aid_plugin import ANN, BOB, ask, dm, harness

    caplog.set_level(logging.INFO)
    async with harness(tmp_path / "aid") as h:
        room = h.room(members=[ANN, BOB])
        await ask(h, room, ANN, "!offer a ladder to lend")
        await ask(h, await dm(h, ANN), ANN, "!need someone to talk to | room: 1")
    async with polls_harness(tmp_path / "polls") as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Spend it on? | Benches | Planters | secret")
        await h.say(dm_room(h, ANN), ANN, "!vote P-1 2")
    public = set(re.findall(r"<private:[^>]+>", caplog.text))
    assert public  # the public offer is logged under a pseudonym
    for line in caplog.text.splitlines():
        if "N-1" in line or "secret ballot" in line:
            assert not re.search(r"<private:[^>]+>", line), line


async def test_a_batch_held_up_by_a_reader_is_written_later_and_nothing_is_asked_twice(
    tmp_path, monkeypatch
):
    """The person is recorded and told; their answer waits for the next batch. A mark left by
    the failed attempt is taken up again, so a later restart does not ask them twice."""
    import sqlite3

    main = await Database.open(tmp_path / "civicbot.sqlite3")
    store = PrivateStore(main, "survey")
    original = PrivateStore._rewrite
    calls = {"n": 0}

    async def busy_once(self, table, add=(), drop=None):
        if table == "private_contributions" and calls["n"] == 0:
            calls["n"] += 1
            raise sqlite3.OperationalError("database is locked")
        await original(self, table, add, drop)

    monkeypatch.setattr(PrivateStore, "_rewrite", busy_once)
    for who in PEOPLE[:2]:  # two wait, batch of one: the write is held up
        assert await store.take_part("item:1", who, '["a"]', batch=1) == "taken"
    assert calls["n"] == 1 and await store.contributions("item:1") == []
    for who in PEOPLE[2:4]:
        assert await store.take_part("item:1", who, '["b"]', batch=1) == "taken"
    await store.seal("item:1", 1)
    assert len(await store.contributions("item:1")) == 4
    await store.close()
    again = PrivateStore(main, "survey")
    assert await again.recover() == []  # nobody is asked again: every answer is stored
    assert await again.count("item:1") == 4
    await again.close()
    await main.close()
