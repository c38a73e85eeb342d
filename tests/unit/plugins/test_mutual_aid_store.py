"""The mutual_aid tables on a real SQLite file: ids, lists, the FTS5 index kept in step with the
posts, the lifecycle written with guards, hours, reports and notification limits."""

from __future__ import annotations

from datetime import timedelta

from civicbot_plugins.mutual_aid.lifecycle_store import AidJobs
from civicbot_plugins.mutual_aid.migrations import MIGRATIONS
from civicbot_plugins.mutual_aid.models import (
    ACCEPTED,
    MATCHED,
    OFFERED,
    OPEN,
    SUPERSEDED,
)
from civicbot_plugins.mutual_aid.parsing import NEED, OFFER, parse_post
from civicbot_plugins.mutual_aid.sealing import Sealer
from civicbot_plugins.mutual_aid.service import accept, mark_done, offer_help, withdraw
from civicbot_plugins.mutual_aid.store import AidStore

from civicbot.storage.database import Database
from tests.unit.plugins import mutual_aid_support
from tests.unit.plugins.mutual_aid_support import KEY, NOW, ROOM, keyed_hash, post

ANN = "@ann:example.org"

aid = mutual_aid_support.aid  # the fixture, under the name the tests ask for

SAM = "@sam:example.org"


async def test_needs_and_offers_are_numbered_separately_and_replays_find_the_first(aid):
    db, store, _ = aid
    first = await post(store, NEED, "help moving a sofa")
    offer = await post(store, OFFER, "I have a ladder to lend")
    second = await post(store, NEED, "dog walking")
    assert (first.short_id, offer.short_id, second.short_id) == ("N-1", "O-1", "N-2")
    again, created = await store.create(
        parse_post(NEED, "something else"),
        room_id=ROOM,
        source_event_id="$same",
        author=SAM,
        private=False,
        now=NOW,
    )
    replay, created_again = await store.create(
        parse_post(NEED, "something else"),
        room_id=ROOM,
        source_event_id="$same",
        author=SAM,
        private=False,
        now=NOW,
    )
    assert created and not created_again and replay == again
    assert await store.get(NEED, 2) == second
    assert await store.get(OFFER, 2) is None
    tables = await db.table_names()
    assert all(t.startswith(("core_", "mutual_aid_", "sqlite_")) for t in tables), tables


async def test_lists_show_open_posts_most_urgent_then_newest(aid):
    _, store, _ = aid
    old = await post(store, NEED, "a lift to the station")
    urgent = await post(store, NEED, "prescription pick-up | today")
    new = await post(store, NEED, "help with a form")
    await post(store, NEED, "elsewhere", room="!other:example.org")
    short = await post(store, NEED, "soon gone | expires in 1 day")
    offer = await post(store, OFFER, "ladder")
    listed = await store.open_posts(ROOM, NEED, NOW + timedelta(days=2))
    assert [p.id for p in listed] == [urgent.id, new.id, old.id]
    assert short.id in [p.id for p in await store.open_posts(ROOM, NEED, NOW)]
    assert [p.id for p in await store.open_posts(ROOM, OFFER, NOW)] == [offer.id]


async def test_the_index_follows_the_posts_state_and_text(aid):
    db, store, _ = aid
    ladder = await post(store, OFFER, "I have a ladder to lend")
    assert [c.post.id for c in await store.search(ROOM, "ladders", NOW)] == [ladder.id]
    step = withdraw(ladder, is_owner=True, helper_match=None)
    assert await store.apply(ladder, step, now=NOW)
    assert await store.search(ROOM, "ladder", NOW) == []
    # written again with the state it was read in: the guard refuses it
    assert not await store.apply(ladder, step, now=NOW)
    drill = await post(store, OFFER, "power drill to borrow")
    edited = await store.edit(drill, parse_post(OFFER, "a wheelbarrow to borrow"), NOW)
    assert edited.body == "a wheelbarrow to borrow" and edited.number == drill.number
    assert await store.search(ROOM, "drill", NOW) == []
    assert [c.post.id for c in await store.search(ROOM, "wheelbarrow", NOW)] == [drill.id]
    # rank 0: the index's own consistency (1 would also demand every post be indexed, and only
    # open ones are, on purpose); a broken index raises "database disk image is malformed"
    await db.execute(
        "INSERT INTO mutual_aid_fts_offer (mutual_aid_fts_offer, rank)"
        " VALUES ('integrity-check', 0)"
    )
    indexed = await db.fetchall(
        "SELECT rowid FROM mutual_aid_fts_offer WHERE mutual_aid_fts_offer MATCH 'borrow'"
    )
    assert [row[0] for row in indexed] == [drill.id]


async def test_search_finds_by_synonym_and_typo_and_only_in_this_room(aid):
    _, store, _ = aid
    pram = await post(store, OFFER, "spare pushchair / pram to give away")
    await post(store, OFFER, "pram here too", room="!other:example.org")
    await post(store, OFFER, "gardening at weekends")
    assert [c.post.id for c in await store.search(ROOM, "a buggy", NOW)] == [pram.id]
    assert [c.post.id for c in await store.search(ROOM, "pushchiar", NOW)] == [pram.id]
    assert await store.search(ROOM, "the and of", NOW) == []


async def test_a_need_is_matched_to_offers_and_an_offer_to_needs(aid):
    _, store, _ = aid
    van = await post(store, OFFER, "got a van, can help move furniture", author=SAM)
    await post(store, OFFER, "maths tutoring", author=SAM)
    sofa = await post(store, NEED, "help moving a sofa on saturday")
    assert [c.post.id for c in await store.matches_for(sofa, NOW)][:1] == [van.id]
    new_offer = await post(store, OFFER, "I can move sofas and beds", author="@bo:example.org")
    assert [c.post.id for c in await store.matches_for(new_offer, NOW)] == [sofa.id]
    # an offer by the need's own poster is not suggested to them
    own = await post(store, OFFER, "sofa moving with my van")
    assert own.id not in [c.post.id for c in await store.matches_for(sofa, NOW)]


async def test_can_accept_and_backing_out_through_the_store(aid):
    _, store, _ = aid
    sofa = await post(store, NEED, "help moving a sofa")
    mine, created = await store.add_match(sofa, SAM, NOW)
    again, created_again = await store.add_match(sofa, SAM, NOW)
    assert created and not created_again and again.id == mine.id and mine.state == OFFERED
    other, _ = await store.add_match(sofa, "@bo:example.org", NOW)
    assert offer_help(sofa, is_owner=False, now=NOW, helper_match=None)
    assert await store.apply(sofa, accept(sofa, mine, is_owner=True, now=NOW), now=NOW, match=mine)
    sofa = await store.by_id(sofa.id)
    assert sofa.state == MATCHED and sofa.times_matched == 1
    assert (await store.match(mine.id)).state == ACCEPTED
    assert (await store.match(other.id)).state == SUPERSEDED
    assert await store.search(ROOM, "sofa", NOW) == []  # matched: not waiting any more
    helping = await store.helping(SAM)
    assert [(p.id, m.id) for p, m in helping] == [(sofa.id, mine.id)]
    step = withdraw(sofa, is_owner=False, helper_match=await store.match(mine.id))
    assert await store.apply(sofa, step, now=NOW, match=await store.match(mine.id))
    sofa = await store.by_id(sofa.id)
    assert sofa.state == OPEN and step.reopened
    assert [c.post.id for c in await store.search(ROOM, "sofa", NOW)] == [sofa.id]


async def test_expiry_and_reminders(aid):
    _, store, _ = aid
    jobs = AidJobs(store)
    short = await post(store, NEED, "bins out | expires in 1 day")
    await post(store, NEED, "a long one")
    assert [p.id for p in await jobs.expiring_between(NOW, NOW + timedelta(days=2))] == [short.id]
    assert await jobs.mark_reminded(short.id) and not await jobs.mark_reminded(short.id)
    assert await jobs.expiring_between(NOW, NOW + timedelta(days=2)) == []
    assert [p.id for p in await jobs.past_expiry(NOW + timedelta(days=1))] == [short.id]


async def test_hours_reports_and_notification_limits(aid):
    _, store, ledger = aid
    sofa = await post(store, NEED, "help moving a sofa")
    await ledger.record_hours(sofa, SAM, "@ann:example.org", 90, NOW)
    assert (await ledger.balance(SAM)).given == 90
    ann = await ledger.balance("@ann:example.org", ROOM)
    assert (ann.given, ann.received, ann.net) == (0, 90, -90)
    report = await ledger.add_report(sofa, SAM, "spam", NOW)
    assert [r.id for r in await ledger.reports_on(sofa.id)] == [report.id]
    assert [await ledger.take_notification(SAM, "2026-12-01", 2) for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert await ledger.take_notification(SAM, "2026-12-02", 2)
    assert await ledger.prune_notifications("2026-12-02") == 1


async def test_digest_sections(aid):
    _, store, _ = aid
    jobs = AidJobs(store)
    offer = await post(store, OFFER, "gardening at weekends")
    waiting = await post(store, NEED, "a lift to the station")
    thanked, _ = await store.create(
        parse_post(NEED, "help with a form"),
        room_id=ROOM,
        source_event_id="$thanks",
        author=SAM,
        private=False,
        now=NOW,
        thanks=True,
    )
    done = mark_done(thanked, is_owner=True, accepted=None)
    assert await store.apply(thanked, done, now=NOW + timedelta(hours=1))
    week = (NOW - timedelta(days=1), NOW + timedelta(days=1))
    assert [p.id for p in await jobs.created_between(ROOM, OFFER, *week)] == [offer.id]
    assert [p.id for p in await jobs.waiting_needs(ROOM, NOW)] == [waiting.id]
    assert [p.id for p in await jobs.thanks_between(ROOM, *week)] == [thanked.id]


async def test_a_room_finds_its_own_post_when_other_rooms_have_better_ones(aid):
    """The index is shared by every room: a room's only ladder must not be lost behind the
    forty better-scoring ladders of another room."""
    _, store, _ = aid
    for _ in range(120):
        await post(store, OFFER, "ladder ladder", room="!other:example.org")
    ours = await post(store, OFFER, "I could lend you my old aluminium ladder at weekends")
    assert [c.post.id for c in await store.search(ROOM, "ladder", NOW)] == [ours.id]


async def test_the_split_index_is_built_from_the_posts_already_open(tmp_path):
    """A database written before the index was split per kind keeps its open posts findable."""
    db = await Database.open(tmp_path / "old.sqlite3")
    try:
        await db.migrate("mutual_aid", MIGRATIONS[:2])
        old = AidStore(db, Sealer(KEY), keyed_hash)
        created, _ = await old.create(
            parse_post(OFFER, "a spare pram to give away"),
            room_id=ROOM,
            source_event_id="$old",
            author=ANN,
            private=False,
            now=NOW,
        )
        await db.migrate("mutual_aid", MIGRATIONS)
        assert [c.post.id for c in await old.search(ROOM, "buggy", NOW)] == [created.id]
    finally:
        await db.close()
