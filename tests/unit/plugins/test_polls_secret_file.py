"""Secret ballots in the engine's private store (a rollback-journal file of its own): no copy of
it, taken mid-commit or left by a crash, holds both a voter being added and a ballot being added,
and a crash inside a batch neither loses nor doubles a ballot."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import asynccontextmanager

from civicbot_plugins.polls import secret as secret_module

from civicbot.storage import private_store
from civicbot.storage.database import Database
from civicbot.storage.private_store import PrivateStore
from civicbot.testing.forensics import linkable, merge, page_images
from tests.unit.plugins.polls_support import ANN, BOB, CAT, DAN, dm_room, polls_harness, restart

BALLOTS = [b'["a"]', b'["b"]', b'["c"]']


class Killed(BaseException):
    """Not an Exception: no handler of the bot catches it, as none survives a SIGKILL."""


def test_the_detector_pairs_voters_with_ballots_in_a_wal_a_reader_holds(tmp_path):
    """The attack of issue 8 on the old layout: the detector must find it, or it proves nothing."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE voters (poll INTEGER, voter TEXT, PRIMARY KEY (poll, voter))")
    db.execute("CREATE TABLE ballots (key TEXT PRIMARY KEY, poll INTEGER, answers TEXT)")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM voters").fetchone()
    for n, (voter, answers) in enumerate(((ANN, '["a"]'), (BOB, '["c"]'), (CAT, '["b"]'))):
        db.execute("BEGIN")
        db.execute("INSERT INTO voters VALUES (1, ?)", (voter,))
        db.execute("INSERT INTO ballots VALUES (?, 1, ?)", (f"k{n}", answers))
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # cannot: the reader holds the log
    files = {p.name: p.read_bytes() for p in tmp_path.glob("old.sqlite3*")}
    assert linkable(page_images(files), [ANN, BOB, CAT], BALLOTS)
    reader.close()
    db.close()


async def test_each_commit_of_a_cast_adds_a_ballot_or_a_voter_never_both(tmp_path, monkeypatch):
    """The worst copy of a rollback-journal file is taken mid-commit: the journal's images of
    every page the transaction changes beside the new pages. Here every transaction of the
    private store is looked at that way: the file before and after it, together."""
    worst: list[list[str]] = []
    people = [ANN, BOB, CAT, DAN, "@eve:test", "@fay:test", "@gus:test"]
    path = tmp_path / "private-polls.sqlite3"
    original = Database.transaction

    def images_now():
        return page_images({path.name: path.read_bytes()}) if path.exists() else {}

    @asynccontextmanager
    async def watched(self):
        before = images_now()
        async with original(self) as db:
            yield db
        if self is private_db[0]:
            worst.append(linkable(merge(before, images_now()), people, BALLOTS))

    private_db: list[object] = [None]
    monkeypatch.setattr(Database, "transaction", watched)
    settings = {"polls": {"min_secret_voters": 2}}
    async with polls_harness(tmp_path, plugins=settings) as h:
        room = h.room(members=people)
        await h.say(room, ANN, "!poll Spend the grant on? | Benches | Planters | Lights | secret")
        store = h.bot.plugins["polls"].store.secret.private
        for n, who in enumerate(people):
            dm = dm_room(h, who)
            await h.say(dm, who, f"!vote P-1 {1 + n % 3}")
            assert "has been counted" in h.last_text(dm)
            private_db[0] = store._db
        await h.say(room, ANN, "!poll close P-1")
        assert "Winner: Benches." in h.last_text(room)
    # 7 voters: a cast each (7), two batches of 2 (3 each), the close's batch of 3 (3).
    assert len(worst) >= 7 + 3 * 3 - 1
    assert all(found == [] for found in worst), worst


async def test_a_crash_inside_a_batch_neither_loses_nor_doubles_a_ballot(tmp_path, monkeypatch):
    """SIGKILL after a batch's ballots are written, before its voters are counted: the next
    start counts them (nobody is asked again). SIGKILL before the ballots are written: the
    next start drops those voters and asks them to vote again."""
    settings = {"polls": {"min_secret_voters": 1}}
    async with polls_harness(tmp_path, plugins=settings) as h:
        room = h.room(members=[ANN, BOB, CAT, DAN])
        await h.say(room, ANN, "!poll Spend the grant on? | Benches | Planters | secret")

        async def crash(self, *args):
            raise Killed  # as a SIGKILL would stop it: nothing after this point runs

        monkeypatch.setattr(PrivateStore, "_count", crash)
        await h.say(dm_room(h, ANN), ANN, "!vote P-1 1")
        try:
            await h.say(dm_room(h, BOB), BOB, "!vote P-1 2")  # 2 wait: 1 is written
        except Killed:
            pass
        monkeypatch.undo()
        copy = tmp_path / "copy.sqlite3"
        shutil.copy(tmp_path / "private-polls.sqlite3", copy)
        check = sqlite3.connect(copy)
        assert check.execute("SELECT COUNT(*) FROM private_contributions").fetchone() == (1,)
        assert check.execute("SELECT COUNT(*) FROM private_batches").fetchone() == (1,)
        check.close()
        h = await restart(h)
        await h.say(dm_room(h, CAT), CAT, "!vote P-1 2")  # opens the store: the batch is finished
        polls = h.bot.plugins["polls"]
        # Ann and Bob: one ballot was written (and is counted now), the other was only in
        # memory: its voter is dropped and asked again.
        assert await polls.store.secret.voter_count(1) == 2
        asked = [s for s in h.transport.sent if "I restarted before your secret vote" in s.body]
        assert len(asked) == 1
        who = ANN if asked[0].room_id == dm_room(h, ANN) else BOB
        await h.say(dm_room(h, who), who, "!vote P-1 2")
        assert "has been counted" in h.last_text(dm_room(h, who))
        await h.say(dm_room(h, DAN), DAN, "!vote P-1 2")
        await h.say(room, ANN, "!poll close P-1")
        assert "4 people voted" in h.last_text(room)


async def test_a_reader_that_never_lets_go_gets_the_vote_asked_again(tmp_path, monkeypatch):
    """A backup tool holding the private file open blocks the write: after the wait the voter
    is asked to send the vote again, and nothing of the attempt stays behind."""
    monkeypatch.setattr(private_store, "BUSY_TIMEOUT_MS", 200)
    async with polls_harness(tmp_path, plugins={"polls": {"min_secret_voters": 1}}) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Spend the grant on? | Benches | Planters | secret")
        dm = dm_room(h, BOB)
        await h.say(dm_room(h, ANN), ANN, "!vote P-1 1")  # opens the file
        reader = sqlite3.connect(tmp_path / "private-polls.sqlite3", isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM private_participants").fetchone()
        await h.say(dm, BOB, "!vote P-1 2")
        assert h.last_text(dm) == secret_module.BUSY_REPLY
        reader.execute("COMMIT")
        assert reader.execute("SELECT COUNT(*) FROM private_participants").fetchone() == (1,)
        reader.close()
        await h.say(dm, BOB, "!vote P-1 2")
        assert "has been counted" in h.last_text(dm)
        await h.say(room, ANN, "!poll close P-1")
        assert "2 people voted" in h.last_text(room)


async def test_ballots_in_the_old_sidecar_file_move_into_the_private_store(tmp_path):
    """An installation upgraded from secret-ballots.sqlite3: its voters and ballots move into
    private-polls.sqlite3 (ballots under new random keys) and the old file is removed."""
    async with polls_harness(tmp_path, plugins={"polls": {"min_secret_voters": 1}}) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "!poll Spend the grant on? | Benches | Planters | secret")
        old = sqlite3.connect(tmp_path / secret_module.LEGACY_FILE)
        old.executescript(
            """
            CREATE TABLE polls_secret_voters (poll_id INTEGER, voter TEXT, receipt TEXT,
                PRIMARY KEY (poll_id, voter)) WITHOUT ROWID;
            CREATE TABLE polls_secret_ballots (ballot_key TEXT PRIMARY KEY, poll_id INTEGER,
                answers TEXT, reason TEXT) WITHOUT ROWID;
            CREATE TABLE polls_secret_receipts (poll_id INTEGER, receipt TEXT,
                PRIMARY KEY (poll_id, receipt)) WITHOUT ROWID;
            """
        )
        with old:
            old.execute("INSERT INTO polls_secret_voters VALUES (1, ?, 'r1')", (ANN,))
            old.execute("INSERT INTO polls_secret_ballots VALUES ('k1', 1, '[\"a\"]', '')")
        old.close()
        h = await restart(h)  # the upgrade
        ann_dm = dm_room(h, ANN)
        await h.say(ann_dm, ANN, "!vote P-1 2")
        assert "You have already voted in P-1" in h.last_text(ann_dm)
        assert not (tmp_path / secret_module.LEGACY_FILE).exists()
        await h.say(dm_room(h, BOB), BOB, "!vote P-1 2")
        assert "has been counted" in h.last_text(dm_room(h, BOB))
        polls = h.bot.plugins["polls"]
        assert await polls.store.secret.voter_count(1) == 2
        ballots = await polls.store.secret.ballots(1, closing_minimum=1)
        assert sorted(b[0] for b in ballots) == [["2"], ["a"]]  # the old one kept as it was
