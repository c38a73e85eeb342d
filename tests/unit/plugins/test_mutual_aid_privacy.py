"""Private needs stay de-identified on disk (WAL included) and in everything that lists them;
!mydata finds a person's data and !forget me removes it while totals stay."""

from __future__ import annotations

from pathlib import Path

from civicbot_plugins.mutual_aid.lifecycle_store import AidJobs
from civicbot_plugins.mutual_aid.parsing import NEED, OFFER
from civicbot_plugins.mutual_aid.sealing import Sealer
from civicbot_plugins.mutual_aid.service import accept, mark_done
from civicbot_plugins.mutual_aid.store import AidStore

from tests.unit.plugins import mutual_aid_support
from tests.unit.plugins.mutual_aid_support import NOW, ROOM, keyed_hash, post

aid = mutual_aid_support.aid  # the fixture, under the name the tests ask for

ASKER = "@vulnerable.asker:example.org"
SAM = "@sam:example.org"


def on_disk(db_path: Path) -> bytes:
    """Every byte SQLite keeps for the database: the file, its log and shared memory."""
    return b"".join(
        p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)
    )


async def private_need_helped(store, ledger):
    need = await post(store, NEED, "help moving a sofa | this week", author=ASKER, private=True)
    match, _ = await store.add_match(need, SAM, NOW)
    assert await store.apply(
        need, accept(need, match, is_owner=True, now=NOW), now=NOW, match=match
    )
    need = await store.by_id(need.id)
    accepted = await store.match(match.id)
    step = mark_done(need, is_owner=True, accepted=accepted, minutes=120, timebank=True)
    assert await store.apply(need, step, now=NOW, match=accepted)
    await ledger.record_hours(need, SAM, ASKER, step.minutes, NOW)
    return need


async def test_who_asked_is_nowhere_on_disk_and_nowhere_in_lists(aid, tmp_path):
    _, store, ledger = aid
    need = await post(store, NEED, "help moving a sofa | this week", author=ASKER, private=True)
    assert need.poster is None and need.private
    assert (await store.open_posts(ROOM, NEED, NOW))[0].poster is None
    assert (await AidJobs(store).waiting_needs(ROOM, NOW))[0].poster is None
    assert (await store.search(ROOM, "sofa", NOW))[0].post.poster is None
    await post(store, OFFER, "van for moving furniture", author=SAM)
    await private_need_helped(store, ledger)
    raw = on_disk(tmp_path / "aid.sqlite3")
    assert b"sofa" in raw  # the need itself is public text; it is on disk
    assert SAM.encode() in raw  # helpers are named: they chose to help in the open
    assert ASKER.encode() not in raw and b"vulnerable.asker" not in raw


async def test_only_the_bot_with_its_key_can_tell_who_asked(aid):
    db, store, _ = aid
    need = await post(store, NEED, "a lift to the hospital", author=ASKER, private=True)
    assert await store.requester_of(need) == ASKER
    assert await store.is_owner(need, ASKER) and not await store.is_owner(need, SAM)
    other_key = AidStore(db, Sealer(b"x" * 32), keyed_hash)
    assert await other_key.requester_of(need) is None
    assert not await other_key.is_owner(need, ASKER)


async def test_two_private_needs_of_one_person_cannot_be_linked_by_their_seals(aid):
    db, store, _ = aid
    one = await post(store, NEED, "shopping", author=ASKER, private=True)
    two = await post(store, NEED, "prescription", author=ASKER, private=True)
    rows = await db.fetchall("SELECT post_id, sealed FROM mutual_aid_requesters ORDER BY post_id")
    assert [r[0] for r in rows] == [one.id, two.id] and rows[0][1] != rows[1][1]
    # a seal moved onto another post does not open there
    await db.execute(
        "UPDATE mutual_aid_requesters SET sealed = ? WHERE post_id = ?", (rows[0][1], two.id)
    )
    assert await store.requester_of(two) is None


async def test_the_requester_finds_their_private_need_and_their_hours(aid):
    _, store, ledger = aid
    need = await private_need_helped(store, ledger)
    open_one = await post(store, NEED, "dog walking", author=ASKER, private=True)
    assert [p.id for p in await store.mine(ASKER)] == [open_one.id]
    assert await store.mine(SAM) == []
    asker = await ledger.balance(ASKER)
    assert (asker.given, asker.received) == (0, 120)
    assert (await ledger.balance(SAM)).given == 120
    exported = await ledger.export(ASKER)
    assert [p["id"] for p in exported["posts"]] == [need.short_id, open_one.short_id]
    assert exported["hours"] == [{"direction": "received", "minutes": 120}]
    helper = await ledger.export(SAM)
    assert helper["helping"] == [
        {"need": need.short_id, "state": "completed", "at": helper["helping"][0]["at"]}
    ]


async def test_forget_removes_posts_and_names_but_keeps_totals(aid, tmp_path):
    db, store, ledger = aid
    await private_need_helped(store, ledger)
    public = await post(store, NEED, "a ladder for the gutters", author=ASKER)
    sam_offer = await post(store, OFFER, "van for moving", author=SAM)
    await store.add_match(public, SAM, NOW)
    await ledger.add_report(sam_offer, ASKER, "just checking", NOW)
    before = await ledger.room_total(ROOM)

    removed, anonymised = await ledger.forget(ASKER)
    assert removed == 2 and anonymised >= 2
    assert await store.mine(ASKER) == [] and await store.by_id(public.id) is None
    assert await store.search(ROOM, "ladder gutters", NOW) == []
    assert (await ledger.balance(ASKER)).received == 0
    assert await ledger.room_total(ROOM) == before == 120
    assert (await ledger.reports_on(sam_offer.id))[0].reporter is None
    assert await ledger.export(ASKER) == {"posts": [], "helping": [], "hours": [], "reports": []}

    removed, anonymised = await ledger.forget(SAM)
    assert removed == 1 and anonymised >= 1
    assert (await ledger.balance(SAM)).given == 0
    assert await ledger.room_total(ROOM) == 120
    rows = await db.fetchall("SELECT helper FROM mutual_aid_matches")
    assert all(r[0] is None for r in rows)
    raw = on_disk(tmp_path / "aid.sqlite3")
    assert SAM.encode() not in raw and ASKER.encode() not in raw
