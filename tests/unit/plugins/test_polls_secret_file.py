"""Secret ballots in their own rollback-journal file: no copy of it, taken mid-commit or left by
a crash, holds both a voter being added and a ballot being added."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from civicbot_plugins.polls import secret as secret_module

from civicbot.testing.forensics import linkable, merge, page_images
from tests.unit.plugins.polls_support import ANN, BOB, CAT, DAN, dm_room, polls_harness

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
    every page the transaction changes beside the new pages. Here each transaction of every
    cast is looked at that way: the file before and after it, together."""
    steps: list[str] = []
    worst: list[list[str]] = []

    def images_now():
        path = Path(tmp_path / secret_module.FILE_NAME)
        return page_images({path.name: path.read_bytes()})

    def around(name):
        original = getattr(secret_module.SecretBallots, name)

        async def wrapped(self, *args):
            before = images_now()
            await original(self, *args)
            after = images_now()
            steps.append(name)
            worst.append(linkable(merge(before, after), [ANN, BOB, CAT, DAN], BALLOTS))

        monkeypatch.setattr(secret_module.SecretBallots, name, wrapped)

    around("_store_ballot")
    around("_note_voter")
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT, DAN])
        await h.say(room, ANN, "!poll Spend the grant on? | Benches | Planters | Lights | secret")
        for who, choice in ((DAN, "2"), (ANN, "1"), (CAT, "3"), (BOB, "2")):
            dm = dm_room(h, who)
            await h.say(dm, who, f"!vote P-1 {choice}")
            assert "has been counted" in h.last_text(dm)
        await h.say(room, ANN, "!poll close P-1")
        assert "Winner: Planters." in h.last_text(room)
    assert steps == ["_store_ballot", "_note_voter"] * 4
    assert worst == [[]] * 8


async def test_a_crash_between_the_two_commits_counts_the_ballot_once(tmp_path, monkeypatch):
    """SIGKILL after the ballot's commit, before the voter's: the replayed !vote notes the
    voter only, answers as counted, and a second ballot is still refused."""
    async with polls_harness(tmp_path, plugins={"polls": {"min_secret_voters": 1}}) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Spend the grant on? | Benches | Planters | secret")
        ballots = h.bot.plugins["polls"].store.secret

        async def crash(self, *args):
            raise Killed  # as a SIGKILL would stop it: nothing after this point runs

        monkeypatch.setattr(secret_module.SecretBallots, "_note_voter", crash)
        dm = dm_room(h, BOB)
        vote = h.transport.make_event(
            dm, BOB, "m.room.message", {"msgtype": "m.text", "body": "!vote P-1 2"}
        )
        try:
            await h.bot.handle_batch([vote])
        except Killed:
            pass
        monkeypatch.undo()
        copy = tmp_path / "copy.sqlite3"
        shutil.copy(tmp_path / secret_module.FILE_NAME, copy)
        check = sqlite3.connect(copy)
        assert check.execute("SELECT COUNT(*) FROM polls_secret_ballots").fetchone() == (1,)
        assert check.execute("SELECT COUNT(*) FROM polls_secret_voters").fetchone() == (0,)
        check.close()
        assert await ballots.voter_count(1) == 0
        await h.bot.handle_batch([vote])  # the same event again, as after the restart
        assert "has been counted" in h.last_text(dm)
        assert await ballots.voter_count(1) == 1
        await h.say(dm, BOB, "!vote P-1 1")
        assert "You have already voted in P-1" in h.last_text(dm)
        await h.say(room, ANN, "!poll close P-1")
        assert "2. Planters: ██████████ 1 (100%)" in h.last_text(room)


async def test_a_reader_that_never_lets_go_gets_the_vote_asked_again(tmp_path, monkeypatch):
    """A backup tool holding the secret file open blocks the commit: after the wait the voter
    is asked to send the vote again, and nothing of the attempt stays behind."""
    monkeypatch.setattr(secret_module, "BUSY_TIMEOUT_MS", 200)
    async with polls_harness(tmp_path, plugins={"polls": {"min_secret_voters": 1}}) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Spend the grant on? | Benches | Planters | secret")
        dm = dm_room(h, BOB)
        await h.say(dm_room(h, ANN), ANN, "!vote P-1 1")  # opens the file
        reader = sqlite3.connect(tmp_path / secret_module.FILE_NAME, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM polls_secret_ballots").fetchone()
        await h.say(dm, BOB, "!vote P-1 2")
        assert h.last_text(dm) == secret_module.BUSY_REPLY
        reader.execute("COMMIT")
        assert reader.execute("SELECT COUNT(*) FROM polls_secret_ballots").fetchone() == (1,)
        reader.close()
        await h.say(dm, BOB, "!vote P-1 2")
        assert "has been counted" in h.last_text(dm)
        await h.say(room, ANN, "!poll close P-1")
        assert "2 people voted" in h.last_text(room)
