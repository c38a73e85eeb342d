"""Consultations as residents and a councillor use them, through the fast harness."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from civicbot.core.events import matrix_to
from civicbot.testing.harness import MODERATOR
from tests.unit.plugins.consultations_support import (
    ANN,
    BOB,
    CAT,
    CLLR,
    ask,
    consult_harness,
    council_room,
    park,
    plugin,
    restart,
    sent_to,
)


async def test_only_a_councillor_may_post_and_the_refusal_says_who_grants_the_role(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = h.room(members=[CLLR, ANN])
        reply = await ask(h, room, CLLR, park())
        assert "only councillors can post a consultation" in reply
        assert f"A moderator can make you one with !role grant {CLLR} councillor" in reply
        await h.say(room, MODERATOR, f"!role grant {CLLR} councillor")
        reply = await ask(h, room, CLLR, park())
        assert reply.startswith("📋 C-1 Consultation: Park improvements")
        assert "Closes Fri 27 Nov 18:00 Europe/London" in reply
        assert "2. Which comes first? (choose one)\n   a) Benches" in reply


async def test_answers_in_the_thread_and_by_dm_walk_through_are_summarised_at_the_deadline(
    tmp_path,
):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park())
        root = sent_to(h, room)[-1].event_id
        thread = {"m.relates_to": {"rel_type": "m.thread", "event_id": root}}
        # Ann answers in the thread, changes her mind once, and asks for the response.
        for text in ("!answer C-1 1 More benches", "!answer C-1 2 a", "!answer C-1 4 agree"):
            assert "is noted" in await ask(h, room, ANN, text)
        assert "is changed" in await ask(h, room, ANN, "!answer C-1 2 b")
        await h.say(room, ANN, "!answer C-1 follow", **thread)
        # Bob is walked through by DM, answering with plain text only.
        assert "I've sent you the questions" in await ask(h, room, BOB, "!answer C-1")
        dm = await h.transport.direct_room(BOB)
        assert "Question 1 of 4" in sent_to(h, dm)[-1].body
        assert "has no choice “z”" in await ask(h, dm, BOB, "skip") + await ask(h, dm, BOB, "z")
        for text in ("c", "a c", "agree"):
            await h.say(dm, BOB, text)
        assert "Type yes or no" in sent_to(h, dm)[-1].body
        assert "I'll send you the council's response" in await ask(h, dm, BOB, "yes")
        # Cat answers one question and doesn't follow.
        await h.say(room, CAT, "!answer C-1 4 disagree")

        await h.advance(timedelta(days=5))  # past Friday 18:00
        summary = next(s for s in sent_to(h, room) if s.body.startswith("📊 Summary of C-1"))
        assert summary.content["m.relates_to"]["event_id"] == root  # in the thread
        body = summary.body
        assert "3 people answered, 7 answers in all." in body
        assert "• @ann:test: More benches" in body
        assert "   b) Lights: 1\n   c) Trees: 1" in body
        assert "   a) Weekdays: 1\n   b) Saturday: 0\n   c) Sunday: 1" in body
        assert "agree 2 · disagree 1 · pass 0" in body
        assert "Common ground:\n   • 4. The park should close at dusk (most agree)" in body
        export = sent_to(h, await h.transport.direct_room(CLLR))[-1]
        assert export.content["msgtype"] == "m.file"
        rows = list(csv.reader(io.StringIO(export.content["_data"].decode())))
        assert rows[1:] == [
            ["@ann:test", "More benches", "Lights", "", "agree"],
            ["@bob:test", "", "Trees", "Weekdays; Sunday", "agree"],
            ["@cat:test", "", "", "", "disagree"],
        ]

        # Bad input after the close, and from someone who isn't the councillor.
        late = await ask(h, room, CAT, "!answer C-1 1 too late?")
        assert "C-1 has closed, so it takes no more answers" in late
        assert "!consult show C-1" in late
        refused = await ask(h, room, CAT, "!respond C-1 We'll do nothing")
        assert "Only the councillor of C-1 (@cllr:test) can post its response" in refused
        # The response goes to the thread and to the two who opted in, not to Cat.
        before = len(h.transport.sent)
        receipt = await ask(h, room, CLLR, "!respond C-1 Four benches and lights by spring")
        assert "sent by direct message to 2 people" in receipt
        reached = {s.room_id for s in h.transport.sent[before:] if "Four benches" in s.body}
        assert reached == {room, await h.transport.direct_room(ANN), dm}
        assert "post an update" not in await ask(h, room, CLLR, "!update C-1 in progress Ordered")
        assert "updated: in progress" in await ask(h, room, ANN, "!consultations")
        assert "Start the update with its status" in await ask(h, room, CLLR, "!update C-1 soon")


async def test_bad_input_gets_a_reply_saying_what_to_type(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park())
        assert "C-1 has questions 1 to 4: type !answer C-1 <question number>" in await ask(
            h, room, ANN, "!answer C-1 7 agree"
        )
        assert "Question 2 has no choice “q”: type one letter: a, b, c" in await ask(
            h, room, ANN, "!answer C-1 2 q"
        )
        assert "type agree, disagree or pass" in await ask(h, room, ANN, "!answer C-1 4 perhaps")
        assert "There's no consultation C-9 here" in await ask(h, room, ANN, "!answer C-9 1 x")
        assert "is still open: close it first" in await ask(h, room, CLLR, "!respond C-1 Soon")
        assert "For example: !consult" in await ask(h, room, CLLR, "!consult Only a title")
        assert "Only @cllr:test (who posted C-1)" in await ask(h, room, ANN, "!consult close C-1")


async def test_moderated_statements_wait_for_approval(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park("moderated"))
        reply = await ask(h, room, ANN, "!statement C-1 Dogs should be on leads")
        assert "waits for a councillor or moderator" in reply and "approve C-1 1" in reply
        assert "Only a councillor or a moderator can approve statements." in await ask(
            h, room, BOB, "!statement approve C-1 1"
        )
        assert "Only a councillor or a moderator can turn down statements." in await ask(
            h, room, BOB, "!statement reject C-1 1"
        )
        assert "Statement 5 added to C-1" in await ask(
            h, room, MODERATOR, "!statement approve C-1 1"
        )
        assert "is noted" in await ask(h, room, BOB, "!answer C-1 5 agree")


async def test_the_overdue_notice_goes_out_once_also_across_a_restart(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, MODERATOR, "!config consultations.respond_within_days 3")
        await h.say(room, CLLR, park())
        await h.say(room, ANN, "!answer C-1 4 agree")
        await h.say(room, CLLR, "!consult close C-1")

        def notices() -> list[str]:
            return [t for t in h.texts(room) if t.startswith("⏳ C-1")]

        await h.advance(timedelta(days=2))
        assert notices() == []
        h = await restart(h)  # timers come back from the tables
        await h.advance(timedelta(days=1, hours=1))
        (notice,) = notices()
        assert "closed 3 days ago and is still waiting for a response. @cllr:test" in notice
        section = await plugin(h).digest_section(
            room, h.clock.now() - timedelta(days=7), h.clock.now()
        )
        assert section is not None and "Waiting for a response: C-1" in section.text
        link = matrix_to(room, (await plugin(h).store.get(1)).root_event)
        assert f"3 days since it closed (@cllr:test) {link}" in section.text
        assert f'Waiting for a response: <a href="{link}">C-1 ' in section.html
        # A new setting gives a new due time (so new transaction ids): only the stored fact
        # that the notice went out keeps it from going out again.
        await h.say(room, MODERATOR, "!config consultations.respond_within_days 5")
        h = await restart(h)
        await h.bot.handle_batch([])  # caught_up(): overdue work is looked at again
        await h.advance(timedelta(days=30))
        assert len(notices()) == 1


async def test_anonymous_answers_go_by_dm_only_and_survive_a_restart_mid_walk(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, MODERATOR, "!config consultations.counts_minimum 2")
        await h.say(room, CLLR, park("anonymous"))
        reply = await ask(h, room, ANN, "!answer C-1 2 b")
        assert "C-1 is anonymous, so please don't answer here" in reply
        assert "Nothing you typed here was stored" in reply
        dm_ann = await h.transport.direct_room(ANN)
        for text in ("Lights please", "b"):
            await h.say(dm_ann, ANN, text)
        h = await restart(h)
        assert "I was restarted while you were answering" in await ask(h, dm_ann, ANN, "a")
        for text in ("Lights please", "b", "a b", "agree"):
            await h.say(dm_ann, ANN, text)
        assert "stored anonymously" in await ask(h, dm_ann, ANN, "yes")
        assert "anonymous answers can't be changed" in await ask(h, room, ANN, "!answer C-1")
        await h.say(room, BOB, "!answer C-1")
        dm_bob = await h.transport.direct_room(BOB)
        for text in ("skip", "c", "skip", "disagree", "no"):
            await h.say(dm_bob, BOB, text)
        await h.say(room, CLLR, "!consult close C-1")
        summary = next(t for t in h.texts(room) if t.startswith("📊 Summary of C-1"))
        assert "2 people answered, 6 answers in all." in summary
        assert "agree 1 · disagree 1" in summary and "@ann:test" not in summary
        export = sent_to(h, await h.transport.direct_room(CLLR))[-1].content["_data"].decode()
        assert ANN not in export and BOB not in export and "Lights please" in export
        data = await ask(h, dm_ann, ANN, "!mydata")
        assert "Lights please" not in data
        await h.say(room, CLLR, "!respond C-1 Lights it is")
        assert any("Lights it is" in s.body for s in sent_to(h, dm_ann))
        assert not any("Lights it is" in s.body for s in sent_to(h, dm_bob))


async def test_a_tiny_anonymous_turnout_shows_only_the_turnout(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park("anonymous"))
        await h.say(room, ANN, "!answer C-1")
        dm = await h.transport.direct_room(ANN)
        for text in ("Benches", "a", "a", "agree", "no"):
            await h.say(dm, ANN, text)
        await h.say(room, CLLR, "!consult close C-1")
        summary = next(t for t in h.texts(room) if t.startswith("📊 Summary of C-1"))
        assert "1 person answered" in summary and "Fewer than 3 people" in summary
        assert "agree 1" not in summary


async def test_hooks_digest_export_and_forget(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        start = h.clock.now()
        await h.say(room, CLLR, park())
        await h.say(room, ANN, "!answer C-1 1 More benches")
        await h.say(room, ANN, "!answer C-1 follow")
        p = plugin(h)
        section = await p.digest_section(room, start, h.clock.now())
        assert (
            section is not None and "Open: C-1 Park improvements (closes Fri 27 Nov" in section.text
        )
        # Every line links to the consultation's post in the room (its thread has the rest).
        root = (await p.store.get(1)).root_event
        link = matrix_to(room, root)
        assert root and section.text.endswith(f" {link}")
        assert f'<li>Open: <a href="{link}">C-1 Park improvements</a> (closes' in section.html
        await h.say(room, CLLR, "!consult close C-1")
        await h.say(room, CLLR, "!respond C-1 Benches are coming")
        until = h.clock.now() + timedelta(minutes=1)
        personal = await p.personal_digest_section(ANN, start, until)
        assert personal is not None and "The council responded to C-1" in personal.text
        assert personal.text.endswith(f"Benches are coming {link}")
        assert await p.personal_digest_section(BOB, start, until) is None
        section = await p.digest_section(room, start, until)
        assert section is not None and "Response to C-1 Park improvements" in section.text
        assert f"• Response to C-1 Park improvements: Benches are coming {link}" in section.text
        assert f'<li>Response to <a href="{link}">C-1 Park improvements</a>: Benches' in (
            section.html
        )
        exported = await p.export_user_data(ANN)
        assert exported is not None and exported["answers"][0]["answer"] == "More benches"
        report = await p.forget_user(ANN)
        assert report is not None and report.anonymised == 1
        assert await p.export_user_data(ANN) is None
        rows = await h.db.fetchall("SELECT respondent, value FROM consultations_answers")
        assert [r[1] for r in rows] == ["More benches"] and ANN not in str(rows[0][0])


async def test_forgetting_an_anonymous_respondent_keeps_the_turnout_without_the_name(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park("anonymous"))
        await h.say(room, ANN, "!answer C-1")
        dm = await h.transport.direct_room(ANN)
        for text in ("Benches", "a", "a", "agree", "yes"):
            await h.say(dm, ANN, text)
        p = plugin(h)
        assert await p.export_user_data(ANN) == {
            "answers": [],
            "answered_anonymously": ["C-1"],
            "note": "Anonymous answers are not linked to you, so they can't be listed here.",
        }
        report = await p.forget_user(ANN)
        assert report is not None and report.anonymised == 1
        assert await p.export_user_data(ANN) is None
        assert await p.anon.voter_count(1) == 1
        assert await p.anon.followers(1) == []
        db = await p.anon.private._open()
        assert ANN not in str(await db.fetchall("SELECT * FROM private_participants"))


async def test_a_private_consultation_shows_counts_but_no_texts_and_hides_a_tiny_turnout(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park("private"))
        await h.say(room, CLLR, park("private"))  # C-2: one person will answer it
        for who, choice in ((ANN, "a"), (BOB, "a"), (CAT, "b")):
            await h.say(room, who, f"!answer C-1 1 Text from {who}")
            await h.say(room, who, f"!answer C-1 2 {choice}")
        await h.say(room, ANN, "!answer C-2 2 a")
        await h.say(room, CLLR, "!consult close C-1")
        await h.say(room, CLLR, "!consult close C-2")
        texts = h.texts(room)
        first = next(t for t in texts if t.startswith("📊 Summary of C-1"))
        assert "   a) Benches: 2\n   b) Lights: 1" in first and "Text from" not in first
        assert "Free-text answers go to the councillor only." in first
        second = next(t for t in texts if t.startswith("📊 Summary of C-2"))
        assert "1 person answered" in second and "Benches: 1" not in second
        export = sent_to(h, await h.transport.direct_room(CLLR))[-2].content["_data"].decode()
        assert "Text from @bob:test" in export


async def test_a_deadline_that_passed_while_the_bot_was_down_closes_at_the_next_start(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park())
        await h.say(room, ANN, "!answer C-1 4 agree")
        await h.bot.stop()
        h.clock.advance(timedelta(days=6))  # Friday 18:00 passes with nobody listening
        h = await restart(h)
        await h.bot.handle_batch([])  # the first sync after the start: the backlog is read
        await h.advance(timedelta(seconds=1))
        summaries = [t for t in h.texts(room) if t.startswith("📊 Summary of C-1")]
        assert len(summaries) == 1 and "1 person answered, 1 answer in all." in summaries[0]
        h = await restart(h)
        await h.bot.handle_batch([])
        await h.advance(timedelta(days=1))
        assert len([t for t in h.texts(room) if t.startswith("📊 Summary of C-1")]) == 1


async def test_in_a_dm_consultations_lists_the_open_ones_of_the_persons_rooms(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        other = h.room(members=[CLLR, BOB])
        await h.say(other, MODERATOR, f"!role grant {CLLR} councillor")
        await h.say(room, CLLR, park())
        await h.say(other, CLLR, "!consult Bins | closes in 3 days | text: Where?")
        dm = await h.transport.direct_room(ANN)
        listed = await ask(h, dm, ANN, "!consultations")
        assert "C-1 Park improvements — open" in listed and "Bins" not in listed
        assert "C-1 has questions 1 to 4" in await ask(h, dm, ANN, "!answer C-1 9 x")
        assert "There's no consultation C-2 here" in await ask(h, dm, ANN, "!answer C-2 1 x")


async def test_the_walk_through_reads_choices_as_typed_and_yes_with_politeness(tmp_path):
    # Issue 22 §4: the exact choice text, "Saturday and Sunday" and "Yes please" were refused.
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park())
        await h.say(room, BOB, "!answer C-1")
        dm = await h.transport.direct_room(BOB)
        await h.say(dm, BOB, "More benches")
        assert "Question 3 of 4" in await ask(h, dm, BOB, "lights")
        assert "Question 4 of 4" in await ask(h, dm, BOB, "Saturday and Sunday")
        assert "Type yes or no" in await ask(h, dm, BOB, "agree")
        assert "I'll send you the council's response" in await ask(h, dm, BOB, "Yes please")
        answers = await plugin(h).store.answers_of(1, BOB)
        assert (answers[2], answers[3]) == ("b", "b c")


async def test_an_unknown_choice_lists_the_choices(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park())
        reply = await ask(h, room, ANN, "!answer C-1 2 swings")
        assert "Question 2 has no choice “swings”" in reply
        assert "a) Benches, b) Lights, c) Trees" in reply


async def test_showing_a_consultation_that_is_not_there_says_so_to_everyone(tmp_path):
    # Issue 22 §5: a resident was told only councillors can post one, a councillor to say which.
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park())
        for who in (ANN, CLLR):
            reply = await ask(h, room, who, "!consult show C-9")
            assert reply.startswith("There's no consultation C-9 here"), (who, reply)
        assert "Say which consultation: !consult show C-2." in await ask(
            h, room, ANN, "!consult show"
        )
        assert "C-1" in await ask(h, room, ANN, "!consult show C-1")
