"""§2 of issue 8 (and §3 of issue 19): no copy of the files in ``data_dir``, taken at any moment,
links a secret voter to a choice — with another reader holding a transaction open, or after a
SIGKILL at any point of a cast or of a batch written by the private store
(``civicbot/storage/private_store.py``). Against Synapse and the real bot process.

The attack this replays: a snapshot of the files holds, for some pages, more than one version
(the database file and the images a WAL or rollback journal keeps of the same page). Two
versions of a page of voters differ by the voters added in between, two versions of a page of
ballots by the ballots; when one snapshot holds both kinds of change, the added voter and the
added ballot pair up. So for every snapshot we collect every image of every page and fail if
pages naming voters and pages holding ballots both come in more than one version.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from civicbot.testing.forensics import linkable, page_images, snapshot
from tests.integration.conftest import BotProcess, is_notice_from, reply_target, room_with_bot

OPTIONS = ("Benches", "Planters", "Lights")


class Snapshotter:
    """Copies data_dir as often as it can from a thread, checking each copy at once."""

    def __init__(self, data_dir: Path, voters: list[str], ballots: list[bytes]):
        self.data_dir, self.voters, self.ballots = data_dir, voters, ballots
        self.taken = 0
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check(snapshot(self.data_dir))

    def check(self, files: dict[str, bytes]) -> None:
        self.taken += 1
        self.problems.extend(linkable(page_images(files), self.voters, self.ballots))

    def __enter__(self) -> Snapshotter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Reader:
    """A second reader holding a read transaction on a database file (a backup, the shell)."""

    def __init__(self, path: Path):
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def hold(self) -> None:
        self.connection.execute("BEGIN")
        self.connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()

    def release(self) -> None:
        self.connection.execute("COMMIT")


async def counted(resident, dm: str, bot: BotProcess, sent: str) -> int:
    events = await resident.messages(dm, limit=50)
    return sum(
        1
        for e in events
        if e["sender"] == bot.user_id
        and reply_target(e) == sent
        and "has been counted" in e["content"].get("body", "")
    )


async def asked_again(resident, dm: str, bot: BotProcess) -> bool:
    """Whether the bot asked this voter to vote again (their ballot was in memory at a kill)."""
    events = await resident.messages(dm, limit=50)
    return any(
        e["sender"] == bot.user_id
        and "I restarted before your secret vote" in e["content"].get("body", "")
        for e in events
    )


async def test_no_snapshot_links_a_secret_voter_to_a_choice(residents, bots):
    ann, bob, cat, dan = [await residents(n) for n in ("ann", "bob", "cat", "dan")]
    people = [ann, bob, cat, dan]
    # A threshold of 1: ballots are written one at a time, at random, once two wait (the
    # smallest batches there are, so batches are written while the copies are taken).
    bot = await bots(plugins={"polls": {"min_secret_voters": 1}})
    room = await room_with_bot(ann, bot, bob, cat, dan)
    ann.mark()
    await ann.send_text(room, "!poll Spend the grant on? | " + " | ".join(OPTIONS) + " | secret")
    await ann.wait_for(room, is_notice_from(bot.user_id, "Secret ballot"))
    data = bot.directory / "data"
    voters = [p.user_id for p in people]
    ballots = [b'["a"]', b'["b"]', b'["c"]']
    choices = {ann.user_id: "1", bob.user_id: "2", cat.user_id: "3", dan.user_id: "2"}
    dms = {}
    for person in people:
        dm = await person.create_room(invite=[bot.user_id], is_direct=True)
        person.mark()
        await person.wait_for(dm, is_notice_from(bot.user_id, "Hello"), timeout=30)
        dms[person.user_id] = dm
    main = Reader(data / "civicbot.sqlite3")
    main.hold()  # all along: the WAL of the main database can never be reset
    secret_path = data / "private-polls.sqlite3"
    # Each kill (and each stop before it) loses the ballots waiting in memory; those voters
    # are asked again below, and their second votes write batches while copies are taken.
    # (Kills inside a batch's own transactions: tests/unit/plugins/test_polls_secret_file.py.)
    kills = {
        bob.user_id: "secret-ballot-stored",
        cat.user_id: "secret-ballot-stored",
        dan.user_id: "after-handle",
    }
    with Snapshotter(data, voters, ballots) as watcher:
        for person in people:
            dm = dms[person.user_id]
            failpoint = kills.get(person.user_id)
            if failpoint:
                await bot.stop()
                await bot.start(env={"CIVICBOT_FAILPOINT": failpoint})
            secret = Reader(secret_path) if secret_path.exists() else None
            if secret:
                secret.hold()  # the cast must wait for this reader, not write past it
            person.mark()
            sent = await person.send_text(dm, f"!vote P-1 {choices[person.user_id]}")
            if failpoint:
                assert await bot.wait(30) != 0  # SIGKILLed at the failpoint
                watcher.check(snapshot(data))  # what the crash left behind
                if secret:
                    secret.release()
                await bot.start()
            else:
                await asyncio.sleep(1.5)  # the cast waits on the reader; copies keep coming
                if secret:
                    secret.release()
            await person.wait_for(dm, is_notice_from(bot.user_id, "has been counted"), timeout=40)
            assert await counted(person, dm, bot, sent) == 1  # counted once, answered once
            watcher.check(snapshot(data))
        # Ballots that were only in memory at a kill were never stored: their voters are
        # asked to vote again once the bot has caught up after its last start, and do.
        await bot.caught_up()
        again = [p for p in people if await asked_again(p, dms[p.user_id], bot)]
        assert again, "a kill inside a batch loses the ballots still waiting in memory"
        for person in again:
            person.mark()
            await person.send_text(dms[person.user_id], f"!vote P-1 {choices[person.user_id]}")
            await person.wait_for(
                dms[person.user_id], is_notice_from(bot.user_id, "has been counted"), timeout=40
            )
            watcher.check(snapshot(data))
    main.release()
    assert watcher.taken > 50
    assert watcher.problems == []

    ann.mark()
    await ann.send_text(room, "!poll close P-1")
    body = (await ann.wait_for(room, is_notice_from(bot.user_id, "Results of P-1")))["content"][
        "body"
    ]
    assert "Winner: Planters." in body and "4 people voted" in body
    assert "2. Planters: █████░░░░░ 2 (50%)" in body
    for person in people:  # a second ballot is refused, before and after the restarts alike
        reply = await person.send_text(dms[person.user_id], "!vote P-1 1")
        await person.wait_for(
            dms[person.user_id],
            lambda e, r=reply: reply_target(e) == r and e["sender"] == bot.user_id,
        )


async def test_a_secret_result_with_too_few_voters_shows_the_turnout_only(residents, bots):
    ann, bob = await residents("ann"), await residents("bob")
    bot = await bots()
    room = await room_with_bot(ann, bot, bob)
    ann.mark()
    await ann.send_text(room, "!poll Spend the grant on? | Benches | Planters | secret")
    await ann.wait_for(room, is_notice_from(bot.user_id, "Secret ballot"))
    for person, choice in ((ann, "1"), (bob, "2")):
        dm = await person.create_room(invite=[bot.user_id], is_direct=True)
        person.mark()
        await person.wait_for(dm, is_notice_from(bot.user_id, "Hello"), timeout=30)
        await person.send_text(dm, f"!vote P-1 {choice}")
        await person.wait_for(dm, is_notice_from(bot.user_id, "has been counted"))
    ann.mark()
    await ann.send_text(room, "!poll close P-1")
    body = (await ann.wait_for(room, is_notice_from(bot.user_id, "Results of P-1")))["content"][
        "body"
    ]
    assert "Fewer than 3 people voted, so only the turnout is published" in body
    assert "2 people voted" in body
    assert "Benches" not in body and "Planters" not in body and "Winner" not in body
