"""Issue 19 against Synapse and the real bot process: one neighbourhood's day, with private needs
by DM among public activity, while ``data_dir`` is copied at random moments; then the attacks an
operator with those copies (and no ``secret.key``, no homeserver) would play — the join of issue 19
§1 (a DM's mapping and last-activity time against a private need's time) and the digest's per-room
counts — link nobody. The same day plays the banned moderator (§4): their power is gone by DM
too; and the look-alike room of §2. (The file-copy attacks on secret ballots:
``test_secret_ballot_files.py``; the pair-of-copies reconstruction, and the look-alike room's other
cases, fast: ``tests/unit/test_privacy_by_construction.py``.)
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
import threading
from datetime import datetime
from pathlib import Path

from tests.integration.conftest import is_notice_from, room_with_bot


class Copier:
    """Copies every database file of ``data_dir`` at random moments, from a thread."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.copies: list[dict[str, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._random = random.Random(19)

    def _run(self) -> None:
        while not self._stop.wait(self._random.uniform(0.01, 0.15)):
            self.take()

    def take(self) -> None:
        """One copy now (also called by the test right after each step, so that every step is
        copied however fast the run goes)."""
        files = {}
        for path in self.data_dir.glob("civicbot.sqlite3*"):
            try:
                files[path.name] = path.read_bytes()
            except FileNotFoundError:
                pass
        self.copies.append(files)

    def __enter__(self) -> Copier:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def the_join(files: dict[str, bytes], people: list[str]) -> dict[str, str]:
    """Issue 19 §1's attack on one copy: a DM mapping (``dm:<person>`` → room) and that room's
    last activity (``room_last:<room>`` = ts|event) matched to each private need's time.
    Returns need → person for every need the join names."""
    with tempfile.TemporaryDirectory() as scratch:
        for name, data in files.items():
            (Path(scratch) / name).write_bytes(data)
        main = Path(scratch) / "civicbot.sqlite3"
        if not main.exists():
            return {}
        try:
            con = sqlite3.connect(main)
            kv = dict(con.execute("SELECT key, value FROM core_kv").fetchall())
            needs = con.execute(
                "SELECT number, created_at FROM mutual_aid_posts WHERE private = 1"
            ).fetchall()
            con.close()
        except sqlite3.Error:
            return {}  # caught mid-write: nothing to join
    rooms = {key.removeprefix("dm:"): value for key, value in kv.items() if key.startswith("dm:")}
    times: dict[str, list[int]] = {}
    for person, room in rooms.items():
        mark = kv.get(f"room_last:{room}")
        if mark and person in people:
            times.setdefault(person, []).append(int(mark.partition("|")[0]))
    named = {}
    for number, created_at in needs:
        at = datetime.fromisoformat(created_at).timestamp() * 1000
        for person, stamps in times.items():
            if any(abs(stamp - at) < 5_000 for stamp in stamps):
                named[f"N-{number}"] = person
    return named


async def test_copies_of_the_files_link_no_private_need_to_its_sender(residents, bots):
    mod, ann, bob, cat = [await residents(n) for n in ("mod", "ann", "bob", "cat")]
    bot = await bots()
    room = await room_with_bot(mod, bot, ann, bob, cat)
    mod.mark()
    await mod.send_text(room, "!config mutual_aid.accepts_private_needs true")
    await mod.wait_for(room, is_notice_from(bot.user_id, "accepts_private_needs"))
    dms = {}
    for person in (ann, bob, cat):
        dm = await person.create_room(invite=[bot.user_id], is_direct=True)
        person.mark()
        await person.wait_for(dm, is_notice_from(bot.user_id, "Hello"), timeout=30)
        dms[person.user_id] = dm
    people = [p.user_id for p in (mod, ann, bob, cat)]
    data = bot.directory / "data"

    # A moderator (Bob, promoted) who then leaves the room.
    await mod.set_power_level(room, bob.user_id, 50)
    with Copier(data) as copier:
        for n, person in enumerate((ann, bob, cat)):
            mod.mark()
            await mod.send_text(room, f"!offer a ladder to lend number {n}")
            await mod.wait_for(room, is_notice_from(bot.user_id, f"O-{n + 1}"))
            copier.take()
            dm = dms[person.user_id]
            person.mark()
            await person.send_text(dm, f"!need someone to talk to, day {n} | room: 1")
            await person.wait_for(dm, is_notice_from(bot.user_id, f"N-{n + 1} is posted"))
            copier.take()
            await person.send_text(room, "nice weather today")  # public activity too
            copier.take()
        await mod.ban(room, bob.user_id, "trouble")  # a moderator banned: no power by DM
        for command in ("!withdraw O-1", "!withdraw N-1", "!report N-1 spam"):
            bob.mark()
            await bob.send_text(dms[bob.user_id], command)
            refusal = await bob.wait_for(dms[bob.user_id], is_notice_from(bot.user_id, "-1"))
            copier.take()
            assert "removed" not in refusal["content"]["body"], command
            assert "moderators" not in refusal["content"]["body"], command  # nobody was told
        for listing, item in (("!offers", "O-1"), ("!needs", "N-1")):
            mod.mark()
            await mod.send_text(room, listing)
            await mod.wait_for(room, is_notice_from(bot.user_id, item))  # still up
    assert await bot.stop() == 0
    copier.copies.append(
        {p.name: p.read_bytes() for p in data.glob("civicbot.sqlite3*") if p.is_file()}
    )
    assert len(copier.copies) > 10

    for files in copier.copies:
        assert the_join(files, people) == {}
    # And the trace it fed on is gone from the last copy altogether: no DM in clear, no time
    # of a DM's activity, no per-hour count of a DM room in the digest's tables.
    final = sqlite3.connect(data / "civicbot.sqlite3")
    try:
        keys = [k for (k,) in final.execute("SELECT key FROM core_kv")]
        assert not any(k.startswith("dm:@") for k in keys)
        for dm in dms.values():
            assert f"room_last:{dm}" not in keys
        for (table,) in final.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            columns = {r[1] for r in final.execute(f"PRAGMA table_info({table})")}
            if "room_id" in columns:
                rows = final.execute(f"SELECT room_id FROM {table}").fetchall()
                assert not {r[0] for r in rows} & set(dms.values()), table
        needs = final.execute("SELECT created_at FROM mutual_aid_posts WHERE private = 1")
        for (created_at,) in needs:
            assert created_at.endswith("00:00:00+00:00") or "T00:00:00" in created_at
    finally:
        final.close()


async def test_a_look_alike_room_never_takes_a_private_need_unasked(residents, bots):
    """Issue 19 §2's attack against Synapse: Eve makes a room named like the real one, brings
    Ann and the bot in and uses mutual aid there. Ann's private need goes nowhere until she
    names a room, her look-alike is not even offered until its maker marks it, and then the
    two are told apart by who moderates them."""
    mod, ann, eve = [await residents(n) for n in ("mod", "ann", "eve")]
    bot = await bots()
    real = await room_with_bot(mod, bot, ann, eve)
    mod.mark()
    await mod.send_text(real, "!config mutual_aid.accepts_private_needs true")
    await mod.wait_for(real, is_notice_from(bot.user_id, "accepts_private_needs"))
    fake = await room_with_bot(eve, bot, ann)  # "Elm Street" too
    eve.mark()
    await eve.send_text(fake, "!needs")
    await eve.wait_for(fake, is_notice_from(bot.user_id, ""))
    dm = await ann.create_room(invite=[bot.user_id], is_direct=True)
    ann.mark()
    await ann.wait_for(dm, is_notice_from(bot.user_id, "Hello"), timeout=30)

    async def need(text: str, expect: str) -> str:
        ann.mark()
        await ann.send_text(dm, f"!need someone to talk to, I'm struggling{text}")
        return str((await ann.wait_for(dm, is_notice_from(bot.user_id, expect)))["content"]["body"])

    asked = await need("", "Is this the room to post it in? Nothing is posted until")
    assert asked.count("Elm Street") == 1 and mod.user_id in asked and eve.user_id not in asked
    assert "you joined today" in asked
    # "room: 2", the look-alike's place in the attack's list, names no room that may take it.
    assert "Elm Street" in await need(" | room: 2", "Is this the room to post it in?")
    # Eve moderates her room, so she can mark it: then it is offered beside the real one.
    eve.mark()
    await eve.send_text(fake, "!config mutual_aid.accepts_private_needs true")
    await eve.wait_for(fake, is_notice_from(bot.user_id, "accepts_private_needs"))
    asked = await need("", "Which room should I post it in? Nothing is posted until you choose")
    rooms = [line for line in asked.splitlines() if "Elm Street" in line]
    assert len(rooms) == 2
    number = next(line.split(".")[0] for line in rooms if f"moderators: {mod.user_id}" in line)
    posted = await need(f" | room: {number}", "N-1 is posted in the room")
    assert "without your name" in posted
    await mod.wait_for(real, is_notice_from(bot.user_id, "A neighbour needs: someone to talk to"))
    said_in_fake = [str(e["content"]) for e in await eve.messages(fake, limit=100)]
    assert not any("someone to talk to" in text for text in said_in_fake)
