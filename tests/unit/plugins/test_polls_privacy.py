"""Secret ballots, ``!mydata``/``!forget me`` and the digest section of the polls plugin."""

from __future__ import annotations

import logging
from datetime import timedelta

from civicbot.core.events import matrix_to
from civicbot.testing.harness import MODERATOR
from tests.unit.plugins.polls_support import (
    ANN,
    BOB,
    CAT,
    START,
    dm_room,
    polls_harness,
    secret_file,
    sent_of,
    start_event,
    tap,
)

SECRET = "!poll Spend the grant on? | Benches | Planters | Lights | secret"


async def table_columns(h, table):
    return {row[1] for row in await h.db.fetchall(f"PRAGMA table_info({table})")}


async def test_secret_ballot_by_direct_message_leaves_no_voter_choice_link(tmp_path, caplog):
    caplog.set_level(logging.INFO)  # what production logs (aiosqlite is kept at WARNING)
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        outsider = "@eve:test"
        await h.say(room, ANN, SECRET)
        assert not sent_of(h, START)  # buttons would publish each vote as a room event
        announcement = h.last_text(room)
        assert "Secret ballot: send your vote to me (@civicbot:test) in a direct message" in (
            announcement
        )
        await h.say(room, BOB, "!vote P-1 2")
        assert "P-1 is a secret ballot, so please don't vote here" in h.last_text(room)

        ann_dm, bob_dm, cat_dm, eve_dm = (dm_room(h, u) for u in (ANN, BOB, CAT, outsider))
        await h.say(ann_dm, ANN, "!vote P-1 3")
        assert "Your secret vote in P-1 has been counted" in h.last_text(ann_dm)
        await h.say(ann_dm, ANN, "!vote P-1 1")
        assert "You have already voted in P-1" in h.last_text(ann_dm)
        await h.say(ann_dm, ANN, "!vote P-1 withdraw")
        assert "can't be withdrawn or changed" in h.last_text(ann_dm)
        await h.say(bob_dm, BOB, "!vote P-1 2")
        await h.say(cat_dm, CAT, "!vote P-1 3")
        await h.say(eve_dm, outsider, "!vote P-1 1")
        assert "I can't find P-1 in any room you're in" in h.last_text(eve_dm)
        await h.say(room, BOB, "!poll show P-1")
        assert "3 people have voted so far; the results stay hidden" in h.last_text(room)

        # The database: who voted, and what was chosen, are in tables that share nothing but
        # the poll number; no timestamps, and no rowid that would keep the order of arrival.
        # They live in their own file; the main database holds none of it.
        secret = secret_file(h)
        columns = {
            table: {r[1] for r in secret.execute(f"PRAGMA table_info({table})")}
            for (table,) in secret.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert columns["private_participants"] == {"item", "who", "receipt", "extra", "batch"}
        assert columns["private_contributions"] == {"key", "item", "payload"}
        for table in ("private_participants", "private_contributions", "private_batches"):
            (sql,) = secret.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,))
            assert "WITHOUT ROWID" in sql[0]
        for table in ("polls_secret_voters", "polls_secret_ballots", "polls_secret_receipts"):
            assert await h.db.fetchval(f"SELECT COUNT(*) FROM {table}") == 0  # main: empty
        assert secret.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert await h.db.fetchval("SELECT COUNT(*) FROM polls_responses") == 0
        for table, names in columns.items():
            for row in secret.execute(f"SELECT * FROM {table}"):
                values = " ".join(str(v) for v in tuple(row))
                if any(user in values for user in (ANN, BOB, CAT)):
                    assert "payload" not in names, table
        # Ballots are written in batches of the threshold (3) once twice that wait, the rest at
        # the close: none is on disk yet, while every voter is (to refuse a second ballot).
        assert secret.execute("SELECT COUNT(*) FROM private_contributions").fetchone() == (0,)
        assert secret.execute("SELECT COUNT(*) FROM private_participants").fetchone() == (3,)
        secret.close()

        await h.say(room, ANN, "!poll close P-1")
        secret = secret_file(h)
        keys = [r[0] for r in secret.execute("SELECT key FROM private_contributions")]
        assert len(keys) == 3 and all(len(k) == 32 for k in keys)
        secret.close()
        results = h.last_text(room)
        assert "Winner: Lights." in results
        assert "3. Lights: ███████░░░ 2 (67%)" in results
        assert "Turnout: 3 people voted of 4 members (75%)." in results
        for user in (ANN, BOB, CAT):
            assert user not in caplog.text
        everything = "\n".join(s.body for s in h.transport.sent if s.room_id == room)
        assert BOB not in everything and CAT not in everything


async def test_secret_proposal_publishes_block_reasons_without_names(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "!poll Close the road on Sundays? | proposal | secret")
        await h.say(dm_room(h, CAT), CAT, "!vote P-1 agree")
        await h.say(dm_room(h, BOB), BOB, "!vote P-1 block Carers need to drive in")
        await h.say(dm_room(h, ANN), ANN, "!vote P-1 agree")
        await h.say(room, ANN, "!poll close P-1")
        results = h.last_text(room)
        assert "• Carers need to drive in" in results
        assert BOB not in results


async def test_export_and_forget_keep_totals_but_not_who_voted(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        polls = h.bot.plugins["polls"]
        await h.say(room, ANN, "!poll Fix the swings? | proposal")
        start = start_event(h).event_id
        await h.say(room, BOB, "!vote P-1 block Wait for the survey")
        await tap(h, room, CAT, start, "agree")
        await h.say(room, ANN, "!poll close P-1")
        await h.say(room, ANN, "!poll Paint? | red | blue")
        open_start = start_event(h).event_id
        await tap(h, room, BOB, open_start, "1")
        await h.say(room, ANN, SECRET)
        await h.say(dm_room(h, BOB), BOB, "!vote P-3 1")

        data = await polls.export_user_data(BOB)
        assert [v["poll"] for v in data["votes"]] == ["P-1", "P-2"]
        assert data["votes"][0]["answer_texts"] == ["Block"]
        assert data["votes"][0]["reason"] == "Wait for the survey"
        assert data["secret_ballots"][0]["poll"] == "P-3"
        assert "cannot be exported" in data["secret_ballots"][0]["note"]
        assert (await polls.export_user_data(ANN))["polls_started_or_decided"][0]["poll"] == "P-1"
        assert await polls.export_user_data("@nobody:test") is None

        report = await polls.forget_user(BOB)
        assert report.removed == 1  # the closed poll's vote row (its total stays in the result)
        assert report.anonymised >= 3  # the block's name, the open vote, the secret voter
        assert await polls.export_user_data(BOB) is None
        await h.say(room, CAT, "!poll show P-1")
        shown = h.last_text(room)
        assert (
            "⛔ Blocked: 1 block (listed first below)" in shown and "• Wait for the survey" in shown
        )
        assert BOB not in shown
        # Bob's open vote still counts, and a new vote from him still replaces it.
        await h.advance(timedelta(minutes=1))
        await tap(h, room, BOB, open_start, "2")
        await h.say(room, ANN, "!poll close P-2")
        assert "Winner: blue." in h.last_text(room)
        assert "1 person voted" in h.last_text(room)
        await h.say(dm_room(h, BOB), BOB, "!vote P-3 2")
        assert "You have already voted in P-3" in h.texts()[-1]
        rows = await h.db.fetchall("SELECT voter FROM polls_responses")
        secret = secret_file(h)
        rows += secret.execute("SELECT who FROM private_participants").fetchall()
        secret.close()
        assert BOB not in {row[0] for row in rows}


async def test_digest_lists_new_and_decided_polls_with_outcomes(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        polls = h.bot.plugins["polls"]
        week_start = h.clock.now()
        assert await polls.digest_section(room, week_start, week_start + timedelta(days=7)) is None
        await h.say(room, ANN, "!poll Litter pick day? | Saturday | Sunday | closes in 2 days")
        await tap(h, room, BOB, start_event(h).event_id, "1")
        await h.say(room, ANN, "!poll Budget? | parks | roads | closes in 10 days")
        await h.advance(timedelta(days=2, minutes=1))
        await h.say(room, ANN, "!outcome P-1 Saturday 10am, meet at the park gates")
        section = await polls.digest_section(room, week_start, h.clock.now())
        assert section.title == "Polls and decisions"
        assert (
            "• P-1 Litter pick day?: Winner: Saturday. 1 person voted of 3 members" in section.text
        )
        assert "Outcome: Saturday 10am, meet at the park gates" in section.text
        assert "• P-2 Budget? (closes Thu 3 Dec 09:00 Europe/London; 0 votes so far)" in (
            section.text
        )
        assert "<b>P-1</b>" in section.html
        # Each poll links to what the bot posted in the room: a decided one to its results.
        decided, opened = await polls.store.get(1), await polls.store.get(2)
        results_link = matrix_to(room, decided.results_event_id)
        start_link = matrix_to(room, opened.start_event_id)
        assert decided.results_event_id and opened.start_event_id
        assert f"1 person voted of 3 members (33%). {results_link}\n" in section.text
        assert f"0 votes so far) {start_link}" in section.text
        assert f'<a href="{results_link}"><b>P-1</b> Litter pick day?</a>:' in section.html
        assert f'<a href="{start_link}"><b>P-2</b> Budget?</a> (closes' in section.html
        later = h.clock.now() + timedelta(days=30)
        assert await polls.digest_section(room, later, later + timedelta(days=7)) is None
        assert await polls.digest_section(MODERATOR, week_start, h.clock.now()) is None


async def test_forgotten_during_an_open_poll_leaves_no_stand_in_behind_the_close(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        polls = h.bot.plugins["polls"]
        await h.say(room, BOB, "!poll Bins? | proposal")
        await h.say(room, ANN, "!vote P-1 block the bins smell")
        await h.say(room, CAT, "!vote P-1 agree")
        await h.say(room, BOB, SECRET)
        await h.say(dm_room(h, ANN), ANN, "!vote P-2 1")
        await h.say(dm_room(h, CAT), CAT, "!vote P-2 2")

        await polls.forget_user(ANN)
        await polls.forget_user(BOB)  # who started P-1 and P-2
        said_before = len(h.texts(room))
        await h.say(room, CAT, "!poll show P-1")
        assert "anon:" not in h.last_text(room)
        assert "• the bins smell" in h.last_text(room)
        await h.say(room, MODERATOR, "!poll close P-1")
        await h.say(room, MODERATOR, "!poll close P-2")
        since = "\n".join(h.texts(room)[said_before:])
        assert "anon:" not in since and ANN not in since
        # P-1's results, before P-2's close (its announcement's edit, then its results).
        results = [text for text in h.texts(room) if not text.startswith("* ")][-2]
        assert (
            "⛔ Blocked: 1 block (listed first below). 1 agree, 0 abstain, 0 disagree." in results
        )
        assert "• the bins smell" in results
        assert "A moderator can record what happens next with !outcome P-1" in results
        assert "Turnout: 2 people voted of 4 members (50%)." in h.last_text(room)

        # Nothing left that the stored salt could turn back into Ann; totals still shown.
        for table in await h.db.table_names():
            if table.startswith("polls_"):
                for row in await h.db.fetchall(f"SELECT * FROM {table}"):
                    values = " ".join(str(v) for v in tuple(row))
                    assert "anon:" not in values and ANN not in values, table
        assert await h.db.fetchval("SELECT COUNT(*) FROM polls_forgotten") == 0
        await h.say(room, CAT, "!poll show P-1")
        assert "⛔ Blocked: 1 block (listed first below)" in h.last_text(room)
        await h.say(room, CAT, "!poll show P-2")
        assert "Turnout: 2 people voted" in h.last_text(room)
        now = h.clock.now()
        section = await polls.digest_section(
            room, now - timedelta(days=1), now + timedelta(hours=1)
        )
        assert "P-1 Bins?: ⛔ Blocked: 1 block (listed first below)" in section.text
        assert "anon:" not in section.text


async def test_forget_clears_who_closed_a_poll(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        polls = h.bot.plugins["polls"]
        await h.say(room, BOB, "!poll Paint? | red | blue")
        await h.say(room, MODERATOR, "!poll close P-1")
        started = (await polls.export_user_data(MODERATOR))["polls_started_or_decided"]
        assert started[0]["poll"] == "P-1" and started[0]["closed"] == "2026-11-23T09:00:00Z"
        report = await polls.forget_user(MODERATOR)
        assert report.anonymised == 1
        assert await h.db.fetchval("SELECT closed_by FROM polls_polls WHERE id = 1") == ""
        assert await polls.export_user_data(MODERATOR) is None


async def test_a_forgotten_voters_stand_in_cannot_be_recomputed_from_the_database(tmp_path):
    """Found in review: the stand-in was a hash of the poll's salt (stored beside it) and the
    user id, so anyone with the database could hash each member's id and find her vote."""
    from civicbot_plugins.polls.models import anonymous_voter

    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, BOB, "!poll Bins on Monday? | yes | no")
        start = start_event(h)
        await tap(h, room, ANN, start.event_id, start.content[START]["answers"][1]["id"])
        await h.bot.plugins["polls"].forget_user(ANN)
        rows = await h.db.fetchall(
            "SELECT r.voter, p.salt FROM polls_responses r JOIN polls_polls p ON p.id = r.poll_id"
        )
        assert rows, "the vote still counts"
        for row in rows:
            assert row["voter"] != ANN
            assert row["voter"] != anonymous_voter(row["salt"], ANN)
