"""Secret ballots leave no order of arrival on disk: not on the pages, not in the log.

These tests read the SQLite file itself. In a b-tree page each new row is written just below the
previous one, so the byte offsets of a page's rows give their order of arrival; sorted that way,
the n-th voter would match the n-th ballot. After every ballot the secret tables must look exactly
as the same rows written at once, in key order, into new tables would: a layout that depends on
which rows there are, not on when they came.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

from tests.unit.plugins.polls_support import ANN, BOB, CAT, DAN, dm_room, polls_harness

SECRET_TABLES = ("private_participants", "private_contributions", "private_batches")
LEAF, INTERIOR = 0x0A, 0x02  # index b-tree pages: what WITHOUT ROWID tables are made of


def varint(buf: bytes, i: int) -> tuple[int, int]:
    value = 0
    for k in range(9):
        byte = buf[i]
        i += 1
        if k == 8:
            return (value << 8) | byte, i
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, i
    return value, i


def record(payload: bytes) -> list[object]:
    """The column values of one row as SQLite stores it (integers and text are enough here)."""
    size, i = varint(payload, 0)
    types = []
    while i < size:
        kind, i = varint(payload, i)
        types.append(kind)
    values: list[object] = []
    at = size
    for kind in types:
        if 1 <= kind <= 4:
            values.append(int.from_bytes(payload[at : at + kind], "big", signed=True))
            at += kind
        elif kind in (8, 9):
            values.append(kind - 8)
        elif kind >= 13 and kind % 2:
            length = (kind - 13) // 2
            values.append(payload[at : at + length].decode())
            at += length
        else:
            raise AssertionError(f"serial type {kind} not expected here")
    return values


def pages_of(path: Path, table: str) -> list[tuple[int, list[tuple[int, bytes]]]]:
    """Every page of ``table``'s b-tree: (page type, [(offset, payload) in key order])."""
    con = sqlite3.connect(path)
    (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    (size,) = con.execute("PRAGMA page_size").fetchone()
    con.close()
    data = path.read_bytes()
    found = []
    todo = [root]
    while todo:
        number = todo.pop()
        page = data[(number - 1) * size : number * size]
        kind = page[0]
        assert kind in (LEAF, INTERIOR), hex(kind)
        header = 8 if kind == LEAF else 12
        count = struct.unpack(">H", page[3:5])[0]
        cells = []
        for i in range(count):
            (offset,) = struct.unpack(">H", page[header + 2 * i : header + 2 * i + 2])
            j = offset
            if kind == INTERIOR:
                todo.append(struct.unpack(">I", page[j : j + 4])[0])
                j += 4
            length, j = varint(page, j)
            cells.append((offset, page[j : j + length]))
        if kind == INTERIOR:
            todo.append(struct.unpack(">I", page[8:12])[0])
        found.append((kind, cells))
    return found


def in_order_of_arrival(path: Path, table: str) -> list[list[object]]:
    """The rows of a one-page table sorted as an attacker would: by where they lie."""
    ((_, cells),) = pages_of(path, table)
    return [record(payload) for _, payload in sorted(cells, key=lambda cell: -cell[0])]


def layout(path: Path, table: str) -> list[list[tuple[int, bytes]]]:
    """Where each row of ``table`` lies: its pages in tree order, each [(offset, row bytes)]."""
    return [cells for _, cells in pages_of(path, table)]


def fresh_layout(path: Path, table: str, scratch: Path) -> list[list[tuple[int, bytes]]]:
    """The layout the same rows get when written at once, in key order, into a new table: a
    layout that depends on nothing but which rows there are."""
    source = sqlite3.connect(path)
    (sql,) = source.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    rows = source.execute(f"SELECT * FROM {table}").fetchall()
    source.close()
    width = 2 if table == "private_participants" else 1  # how many columns the key has
    rows.sort(key=lambda row: row[:width])
    fresh = scratch / f"fresh-{table}.sqlite3"
    fresh.unlink(missing_ok=True)
    target = sqlite3.connect(fresh)
    target.execute(sql)
    with target:
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            target.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    target.close()
    return layout(fresh, table)


def history_free(path: Path, table: str, scratch: Path) -> bool:
    return layout(path, table) == fresh_layout(path, table, scratch)


async def database_file(h) -> Path:
    """The polls plugin's private store: in rollback-journal mode, so no log holds older pages
    of it."""
    path = h.path / "private-polls.sqlite3"
    assert not path.with_name(path.name + "-wal").exists()
    assert not path.with_name(path.name + "-journal").exists()  # gone once a cast commits
    return path


async def test_voters_and_ballots_lie_in_key_order_not_in_order_of_arrival(tmp_path):
    eve, fay = "@eve:test", "@fay:test"
    # Neither alphabetical nor random: the order a disk must not keep.
    arrivals = [(DAN, "1"), (ANN, "3"), (fay, "2"), (BOB, "3"), (eve, "1"), (CAT, "2")]
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT, DAN, eve, fay])
        await h.say(room, ANN, "!poll Spend the grant on? | Benches | Planters | Lights | secret")
        for who, choice in arrivals:
            dm = dm_room(h, who)
            await h.say(dm, who, f"!vote P-1 {choice}")
            assert "has been counted" in h.last_text(dm)
            # Checked after every ballot: the main database's log holds no voter, then the pages.
            log = (h.path / "civicbot.sqlite3-wal").read_bytes()
            for user, _ in arrivals:
                assert user == ANN or user.encode() not in log, user  # Ann started the poll
            path = await database_file(h)
            for table in SECRET_TABLES:
                assert history_free(path, table, tmp_path), (table, who)

        await h.say(room, ANN, "!poll close P-1")  # the last batch is written
        path = await database_file(h)
        for table in SECRET_TABLES:
            assert history_free(path, table, tmp_path), table
        voters = in_order_of_arrival(path, "private_participants")
        assert [v[:2] for v in voters] == [
            ["poll:1", user] for user in sorted(user for user, _ in arrivals)
        ]
        ballots = in_order_of_arrival(path, "private_contributions")
        assert sorted(b[2] for b in ballots) == sorted(f'[["{c}"], ""]' for _, c in arrivals)
        keys = [b[0] for b in ballots]
        assert keys == sorted(keys)  # they lie in the order of their random keys


async def test_layout_keeps_no_history_across_pages_and_polls(tmp_path):
    """Several secret polls at once, one closed, votes interleaved, rows on several pages."""
    people = [f"@{'resident' * 20}{n:02d}:example.org" for n in range(40)]  # long Matrix ids
    async with polls_harness(tmp_path) as h:
        room = h.room(members=people)
        for question in ("Benches?", "Planters?", "Lights?"):
            await h.say(room, people[0], f"!poll {question} | proposal | secret")
        reason = "because " + "it matters to the street " * 12
        for n, who in enumerate(reversed(people)):
            poll = 1 + n % 3 if n <= 20 else 1 + 2 * (n % 2)
            dm = dm_room(h, who)
            await h.say(dm, who, f"!vote P-{poll} block {reason}" if n % 2 else f"!vote P-{poll} 1")
            assert "has been counted" in h.last_text(dm), h.last_text(dm)
            if n == 20:
                await h.say(room, people[0], "!poll close P-2")
        path = await database_file(h)
        for table in SECRET_TABLES:
            pages = pages_of(path, table)
            assert table == "private_batches" or len(pages) > 2, (table, len(pages))
            assert history_free(path, table, tmp_path), table
