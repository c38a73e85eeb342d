"""Anonymous answers leave no link to their authors on disk: not in the tables, not in the order
rows lie on their pages, not in a log, and not in the main database at all.

Read from the SQLite files themselves, as in test_polls_secret_layout.py: a b-tree page writes
each new row just below the previous one, so sorting rows by offset gives their order of arrival,
and the n-th respondent would match the n-th set of answers. After every submission the tables
must look exactly as the same rows written at once, in key order, into new tables would.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from civicbot.storage.private_store import TABLES
from civicbot.testing.harness import BotHarness
from tests.unit.plugins.consultations_support import (
    ANN,
    BOB,
    CAT,
    CLLR,
    consult_harness,
    council_room,
    park,
)
from tests.unit.plugins.test_polls_secret_layout import layout, pages_of, record

FILE_NAME = "private-consultations.sqlite3"  # the plugin's private store (civicbot/storage)
# Arrival order deliberately not alphabetical: cat, ann, bob.
ANSWERS = {
    CAT: ("Cat wants a pond", "c", "b", "disagree"),
    ANN: ("Ann wants benches", "a", "a c", "agree"),
    BOB: ("Bob wants lights", "b", "a", "pass"),
}


def rows_by_position(path: Path, table: str) -> list[list[object]]:
    cells = [cell for _, page in pages_of(path, table) for cell in page]
    return [record(payload) for _, payload in sorted(cells, key=lambda cell: -cell[0])]


def fresh_layout(path: Path, table: str, scratch: Path) -> list[list[tuple[int, bytes]]]:
    source = sqlite3.connect(path)
    (sql,) = source.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    rows = source.execute(f"SELECT * FROM {table}").fetchall()
    source.close()
    width = TABLES[table][1]
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


async def answer_anonymously(h: BotHarness, room: str, who: str, answers: tuple[str, ...]) -> None:
    await h.say(room, who, "!answer C-1")
    dm = await h.transport.direct_room(who)
    for text in (*answers, "yes"):
        await h.say(dm, who, text)
    assert "stored anonymously" in h.last_text(dm)


async def test_respondents_and_answers_lie_in_key_order_with_no_trace_in_the_main_file(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park("anonymous"))
        anon_file = tmp_path / FILE_NAME
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        for who, answers in ANSWERS.items():
            await answer_anonymously(h, room, who, answers)
            # After every submission, not only at the end.
            for table in TABLES:
                assert layout(anon_file, table) == fresh_layout(anon_file, table, scratch), table
        assert not (tmp_path / f"{FILE_NAME}-journal").exists()
        assert not (tmp_path / f"{FILE_NAME}-wal").exists()
        # Three answers are fewer than twice the threshold (3): none is written before the close.
        assert rows_by_position(anon_file, "private_contributions") == []
        await h.say(room, CLLR, "!consult close C-1")
        for table in TABLES:
            assert layout(anon_file, table) == fresh_layout(anon_file, table, scratch), table

        voters = rows_by_position(anon_file, "private_participants")
        assert [v[1] for v in voters] == sorted([ANN, BOB, CAT])  # by name, not by arrival
        bundles = rows_by_position(anon_file, "private_contributions")
        assert len(bundles) == 3
        assert [b[0] for b in bundles] == sorted(b[0] for b in bundles)  # by random key
        # No table pairs a person with an answer: the voters' table holds no answer, the
        # answers' tables hold no person, and none of them has a time or a rowid.
        con = sqlite3.connect(anon_file)
        for table in TABLES:
            (sql,) = con.execute(
                "SELECT sql FROM sqlite_master WHERE name = ?", (table,)
            ).fetchone()
            assert "WITHOUT ROWID" in sql and "_at" not in sql
            text = " ".join(map(str, con.execute(f"SELECT * FROM {table}").fetchall()))
            if table == "private_participants":
                assert not any(a[0] in text for a in ANSWERS.values())
            else:
                assert not any(who in text for who in ANSWERS)
        con.close()

        # The main database (and its log) never held the answers, nor where each person was.
        await h.db.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
        main = b"".join(p.read_bytes() for p in tmp_path.glob("civicbot.sqlite3*") if p.is_file())
        for answers in ANSWERS.values():
            assert answers[0].encode() not in main
        walks = await h.db.fetchall("SELECT * FROM consultations_walks")
        assert walks == []
        assert await h.db.fetchval("SELECT COUNT(*) FROM consultations_answers") == 0
