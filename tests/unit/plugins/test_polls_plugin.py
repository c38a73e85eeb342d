"""The polls plugin driven through the real bot: fake homeserver, real database and templates."""

from __future__ import annotations

from datetime import timedelta

from civicbot.testing.harness import MODERATOR
from tests.unit.plugins.polls_support import (
    ANN,
    BOB,
    CAT,
    DAN,
    END,
    START,
    dm_room,
    polls_harness,
    restart,
    sent_of,
    start_event,
    tap,
)

POLL = "!poll Which day for the litter pick? | Saturday | Sunday | closes friday 18:00"


async def test_poll_is_announced_in_text_then_posted_as_a_native_poll(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        asked = await h.say(room, ANN, POLL)
        text, start = h.transport.sent
        assert text.type == "m.room.message" and start.type == START
        assert text.content["msgtype"] == "m.notice"
        assert text.content["m.relates_to"] == {"m.in_reply_to": {"event_id": asked.event_id}}
        assert text.body.startswith(
            "📊 P-1: Which day for the litter pick?\n1. Saturday\n2. Sunday"
        )
        assert "Closes Fri 27 Nov 18:00 Europe/London (in 4 days)." in text.body
        assert "!vote P-1 <number>" in text.body
        assert "<li>Saturday</li>" in text.content["formatted_body"]
        poll = start.content[START]
        assert poll["kind"] == "org.matrix.msc3381.poll.disclosed"
        assert poll["max_selections"] == 1
        assert poll["question"] == {
            "org.matrix.msc1767.text": "Which day for the litter pick? (P-1)"
        }
        assert poll["answers"] == [
            {"id": "1", "org.matrix.msc1767.text": "Saturday"},
            {"id": "2", "org.matrix.msc1767.text": "Sunday"},
        ]
        assert start.content["org.matrix.msc1767.text"].endswith("1. Saturday\n2. Sunday")


async def test_buttons_and_typed_votes_count_alike_by_the_client_rules(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT, DAN])
        await h.say(room, ANN, POLL)
        start = start_event(h).event_id
        await tap(h, room, ANN, start, "1")
        await tap(h, room, BOB, start, "2")
        await h.say(room, CAT, "!vote P-1 2")
        assert "✅ Counted: your vote in P-1 is 2. Sunday" in h.last_text(room)
        await h.advance(timedelta(minutes=1))
        await h.say(room, BOB, "!vote P-1 saturday")  # changes Bob's button vote
        await tap(h, room, CAT, start)  # an empty answer list withdraws Cat's vote
        await tap(h, room, DAN, start, "7")  # an answer the poll does not have: spoiled
        await h.say(room, BOB, "!poll show P-1")
        assert "1. Saturday: ██████████ 2 (100%)" in h.last_text(room)
        await h.say(room, ANN, "!poll close P-1")
        end = sent_of(h, END)[-1]
        assert end.content["m.relates_to"] == {"rel_type": "m.reference", "event_id": start}
        results = h.last_text(room)
        assert results.startswith(
            "📊 Results of P-1: Which day for the litter pick?\nWinner: Saturday."
        )
        assert "1. Saturday: ██████████ 2 (100%)" in results
        assert "2. Sunday: ░░░░░░░░░░ 0 (0%)" in results
        assert "Turnout: 2 people voted of 5 members (40%); 1 spoiled." in results
        # After the end: neither a button nor a typed vote changes anything.
        await tap(h, room, DAN, start, "2")
        await h.say(room, DAN, "!vote P-1 2")
        assert "Voting in P-1 has closed, so that vote was not counted" in h.last_text(room)
        await h.say(room, DAN, "!poll show P-1")
        assert "1. Saturday: ██████████ 2 (100%)" in h.last_text(room)
        assert len(sent_of(h, END)) == 1


async def test_only_the_creator_or_a_moderator_closes_early(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, POLL)
        await h.say(room, BOB, "!poll close P-1")
        assert "Only the person who started P-1 or a moderator" in h.last_text(room)
        await h.say(room, MODERATOR, "!poll close P-1")
        assert "Results of P-1" in h.last_text(room)
        await h.say(room, ANN, "!poll close P-1")
        assert "P-1 has already closed" in h.last_text(room)


async def test_deadline_reminder_and_close(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Bins on Monday? | yes | no")  # default: a week
        await tap(h, room, BOB, start_event(h).event_id, "1")
        await h.advance(timedelta(days=5, hours=23))
        assert "⏰" not in h.last_text(room)
        await h.advance(timedelta(hours=1, minutes=10))
        reminder = h.last_text(room)
        assert reminder.startswith("⏰ P-1 closes in 24 hours (Mon 30 Nov 09:00 Europe/London)")
        assert "1 person has voted so far." in reminder
        await h.advance(timedelta(hours=23))
        assert sum("⏰" in t for t in h.texts(room)) == 1
        assert not sent_of(h, END)
        await h.advance(timedelta(hours=1))
        assert len(sent_of(h, END)) == 1
        assert h.last_text(room).startswith("📊 Results of P-1: Bins on Monday?\nWinner: yes.")
        await h.say(room, ANN, "!polls")
        assert "There are no open polls here" in h.last_text(room)


async def test_moderators_can_switch_reminders_off_per_room(tmp_path):
    async with polls_harness(tmp_path) as h:
        quiet, busy = h.room(members=[ANN]), h.room(members=[ANN])
        await h.bot.room_settings.set(quiet, "polls", "reminder_hours", 0, MODERATOR)
        await h.say(quiet, ANN, "!poll A? | x | y")
        await h.say(busy, ANN, "!poll B? | x | y")
        await h.advance(timedelta(days=6, minutes=20))
        assert not any("⏰" in t for t in h.texts(quiet))
        assert any("⏰" in t for t in h.texts(busy))


async def test_a_replayed_poll_command_posts_one_poll(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN])
        asked = await h.say(room, ANN, POLL)
        sent = len(h.transport.sent)
        # As after a crash before the event was marked handled: the same event comes again.
        await h.db.execute("DELETE FROM core_handled")
        h = await restart(h)
        await h.bot.handle_batch([asked])
        assert len(h.transport.sent) == sent
        assert await h.db.fetchval("SELECT COUNT(*) FROM polls_polls") == 1


async def test_restart_recounts_from_the_homeserver_and_closes_an_overdue_poll(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT, DAN])
        await h.say(room, ANN, "!poll Paint? | red | blue | closes in 2 days")
        start = start_event(h).event_id
        await tap(h, room, ANN, start, "1")
        dans = await tap(h, room, DAN, start, "1")
        await h.bot.stop()
        # While the bot is down, Dan's vote is redacted (the homeserver stops relating it)...
        events = h.transport.rooms[room].events
        events[:] = [e for e in events if e["event_id"] != dans.event_id]
        # ... and votes reach the homeserver but not the bot.
        h.clock.advance(timedelta(days=1))
        for who, answer in ((BOB, "2"), (CAT, "2"), (ANN, "2")):
            h.transport.make_event(
                room,
                who,
                "org.matrix.msc3381.poll.response",
                {
                    "m.relates_to": {"rel_type": "m.reference", "event_id": start},
                    "org.matrix.msc3381.poll.response": {"answers": [answer]},
                },
                ts=int(h.clock.now().timestamp() * 1000),
            )
        h.clock.advance(timedelta(days=3))  # and the deadline passes
        h = await restart(h)
        await h.advance(timedelta(seconds=1))  # the recount
        assert not sent_of(h, END)  # the overdue close waits for the catch-up sync
        await h.advance(timedelta(minutes=5))
        assert not sent_of(h, END)  # ... however long that takes: it waits for no timer
        await h.bot.handle_batch([])  # the backlog (nothing new here) has been read
        results = h.last_text(room)
        assert "Winner: blue." in results
        assert "2. blue: ██████████ 3 (100%)" in results
        assert "Turnout: 3 people voted of 5 members (60%)." in results


async def test_a_moderator_ending_the_poll_in_their_client_closes_it(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, POLL)
        start = start_event(h).event_id
        await tap(h, room, BOB, start, "2")
        end = {"m.relates_to": {"rel_type": "m.reference", "event_id": start}, END: {}}
        await h.send(room, ANN, END, end)  # power 0: clients ignore it, and so do we
        assert "Results" not in h.last_text(room)
        await h.advance(timedelta(minutes=5))
        await h.send(room, MODERATOR, END, end)
        assert "Winner: Sunday." in h.last_text(room)
        assert not sent_of(h, END)  # the moderator's end stands; we send no second one
        await tap(h, room, ANN, start, "1")
        await h.say(room, ANN, "!poll show P-1")
        assert "Winner: Sunday." in h.last_text(room)


async def test_a_redacted_vote_stops_counting(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, POLL)
        start = start_event(h).event_id
        first = await tap(h, room, BOB, start, "1")
        await h.advance(timedelta(minutes=1))
        second = await tap(h, room, BOB, start, "2")
        await h.send(room, BOB, "m.room.redaction", {"redacts": second.event_id})
        await h.say(room, ANN, "!poll show P-1")
        assert "1. Saturday: ██████████ 1 (100%)" in h.last_text(room)
        assert first.event_id != second.event_id


async def test_hidden_results_stay_hidden_until_the_close(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Budget? | parks | roads | hidden")
        start = start_event(h)
        assert start.content[START]["kind"] == "org.matrix.msc3381.poll.undisclosed"
        await tap(h, room, BOB, start.event_id, "1")
        await h.say(room, ANN, "!poll show P-1")
        shown = h.last_text(room)
        assert "1 person has voted so far; the results stay hidden" in shown
        assert "█" not in shown and "100%" not in shown
        await h.say(room, ANN, "!poll close P-1")
        assert "1. parks: ██████████ 1 (100%)" in h.last_text(room)


async def test_multiple_choice_up_to_n(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Which stalls? | cakes | books | plants | up to 2")
        start = start_event(h)
        assert start.content[START]["max_selections"] == 2
        await h.say(room, BOB, "!vote P-1 1 2 3")
        assert "P-1 lets you choose up to 2; you gave 3" in h.last_text(room)
        await h.say(room, BOB, "!vote P-1 1, 3")
        await tap(h, room, ANN, start.event_id, "3", "2")
        await h.say(room, ANN, "!poll close P-1")
        results = h.last_text(room)
        assert "Winner: plants." in results
        assert "3. plants: ██████████ 2 (100%)" in results


async def test_proposal_shows_blocks_with_their_reasons(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "!poll Adopt the new bin rota? | proposal")
        start = start_event(h).event_id
        await h.say(room, BOB, "!vote P-1 block")
        assert "please say why" in h.last_text(room)
        await h.say(room, BOB, "!vote P-1 block It ignores people who work nights")
        await tap(h, room, CAT, start, "agree")
        await tap(h, room, ANN, start, "agree")
        await h.say(room, ANN, "!poll close P-1")
        results = h.last_text(room)
        assert (
            "⛔ Blocked: 1 block (listed first below). 2 agree, 0 abstain, 0 disagree." in results
        )
        assert "• @bob:test: It ignores people who work nights" in results
        assert "4. Block: ███░░░░░░░ 1 (33%)" in results


async def test_ranked_choice_by_instant_runoff(tmp_path):
    async with polls_harness(tmp_path) as h:
        voters = [f"@v{i}:test" for i in range(9)]
        room = h.room(members=voters)
        await h.say(room, voters[0], "!poll Mural? | Birds | Bridges | Bikes | ranked")
        assert not sent_of(h, START)  # clients cannot rank: ballots are typed
        rankings = ["1"] * 4 + ["2 3"] * 2 + ["3 2"] * 3
        for voter, ranking in zip(voters, rankings, strict=True):
            await h.say(room, voter, f"!rank P-1 {ranking}")
        assert "your vote in P-1 is 3. Bikes, then 2. Bridges" in h.last_text(room)
        await h.advance(timedelta(minutes=1))
        await h.say(room, voters[0], "!vote P-1 3")  # !vote on a ranked poll ranks too
        await h.say(room, voters[0], "!poll close P-1")
        results = h.last_text(room)
        assert "Winner: Bikes after 2 rounds." in results
        assert "Round 1: Birds 3, Bridges 2, Bikes 4. Out: Bridges (fewest votes)." in results
        assert "Round 2: Birds 3, Bikes 6. Majority: 6 of 9." in results
        assert "Tie rule: Each round the option with the fewest votes" in results
        assert "First preferences:" in results


async def test_outcome_goes_in_the_polls_thread_and_comes_back_for_review(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, POLL)
        announcement = h.transport.sent[0].event_id
        await h.say(room, ANN, "!outcome P-1 Saturday it is")
        assert "P-1 is still open" in h.last_text(room)
        await h.say(room, ANN, "!poll close P-1")
        await h.say(room, BOB, "!outcome P-1 Saturday it is")
        assert "Only the person who started P-1 or a moderator" in h.last_text(room)
        await h.say(room, ANN, "!outcome P-1 Saturday 10am at the park | review in 2 weeks")
        outcome = [s for s in sent_of(h, "m.room.message") if "📌" in s.body][-1]
        assert outcome.body.startswith("📌 Outcome of P-1 (Which day for the litter pick?):")
        assert "We'll look at this again on Mon 7 Dec 09:00 Europe/London." in outcome.body
        assert outcome.content["m.relates_to"]["rel_type"] == "m.thread"
        assert outcome.content["m.relates_to"]["event_id"] == announcement
        await h.advance(timedelta(days=14, minutes=10))
        review = [s for s in sent_of(h, "m.room.message") if "🔁" in s.body]
        assert len(review) == 1
        assert review[0].content["m.relates_to"]["event_id"] == announcement
        await h.say(room, BOB, "!poll show P-1")
        assert "Outcome: Saturday 10am at the park" in h.last_text(room)


async def test_polls_lists_the_open_ones(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!polls")
        assert "There are no open polls here" in h.last_text(room)
        await h.say(room, ANN, POLL)
        await h.say(room, ANN, "!poll Paint? | red | blue | secret")
        await h.say(room, BOB, "!polls")
        listing = h.last_text(room)
        assert (
            "P-1: Which day for the litter pick? (closes Fri 27 Nov 18:00 Europe/London" in listing
        )
        assert (
            "P-2: Paint? (closes Mon 30 Nov 09:00 Europe/London; 0 votes so far; secret" in listing
        )


async def test_who_may_start_polls(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN])
        await h.bot.room_settings.set(room, "polls", "create_level", 50, MODERATOR)
        await h.say(room, ANN, POLL)
        assert "only people with power level 50 or more can start polls" in h.last_text(room)
        await h.say(room, MODERATOR, POLL)
        assert h.last_text(room).startswith("📊 P-1")


async def test_bad_input_gets_a_friendly_reply(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN])
        cases = {
            "!poll Which day? | Sat | closes friday": "at least two options",
            "!poll Which day? | Sat | Sun | closes yesterday": "is in the past",
            "!poll Which day? | Sat | Sun | closes whenever": "couldn't read 'whenever'",
            "!poll Which day? | Sat | Sun | closes in 1 minute": "closes too soon",
            "!poll": "Usage: !poll <question and options>",
            "!poll show": "Which poll? Type !poll show P-12",
            "!vote P-9 1": "I can't find P-9",
            "!vote 1": "Usage: !vote <P-number> <choice>",
            "!rank P-x 1": "'P-x' is not an id like P-12",
        }
        for command, expected in cases.items():
            await h.say(room, ANN, command)
            assert expected in h.last_text(room), (command, h.last_text(room))
        await h.say(room, ANN, POLL)
        await h.say(room, ANN, "!rank P-1 1 2")
        assert "P-1 isn't a ranked poll; vote with !vote P-1 <number>." in h.last_text(room)
        await h.say(room, ANN, "!vote P-1 5")
        assert "P-1 has options 1 to 2; there is no 5." in h.last_text(room)
        assert await h.db.fetchval("SELECT COUNT(*) FROM polls_polls") == 1


async def test_a_crash_during_the_close_is_finished_at_start_up_without_repeating(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, POLL)
        await tap(h, room, BOB, start_event(h).event_id, "2")
        polls = h.bot.plugins["polls"]

        async def crash(*args, **kwargs):
            raise RuntimeError("the disk failed after the results went out, before they were kept")

        polls.store.finish_close = crash
        await h.say(room, ANN, "!poll close P-1")
        assert sum("Results of P-1" in t for t in h.texts(room)) == 1
        h = await restart(h)
        await h.advance(timedelta(seconds=1))
        assert sum("Results of P-1" in t for t in h.texts(room)) == 1  # same transaction ids
        assert len(sent_of(h, END)) == 1
        state = await h.db.fetchval("SELECT state FROM polls_polls WHERE id = 1")
        assert state == "closed"


async def test_the_personal_digest_lists_open_polls_the_person_has_not_voted_in(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        elsewhere = h.room(members=[ANN, DAN])
        await h.say(room, ANN, POLL)
        await h.say(room, ANN, "!poll Paint? | red | blue | secret")
        await h.say(room, ANN, "!poll Bins on? | monday | tuesday")
        await h.say(elsewhere, ANN, "!poll Not Bob's room? | yes | no")
        await h.say(room, BOB, "!vote P-1 1")
        await h.say(room, BOB, "!vote P-3 2")
        assert "P-3" not in (await h.bot.plugins["polls"].personal_digest_section(
            BOB, h.clock.now() - timedelta(days=7), h.clock.now())).text  # fmt: skip
        await h.say(room, BOB, "!vote P-3 withdraw")  # an unvote: P-3 waits again
        assert "withdrawn" in h.last_text(room)
        cat_dm = await h.transport.direct_room(CAT)
        await h.say(cat_dm, CAT, "!vote P-2 1")  # secret: Cat voted, Bob did not
        plugin = h.bot.plugins["polls"]
        now = h.clock.now()
        bob = await plugin.personal_digest_section(BOB, now - timedelta(days=7), now)
        assert bob is not None and bob.html is not None
        assert "P-1" not in bob.text and "Not Bob's room" not in bob.text
        assert "P-2 Paint?" in bob.text and "secret ballot, vote here with !vote P-2" in bob.text
        assert "P-3 Bins on?" in bob.text
        assert f"https://matrix.to/#/{room}/" in bob.text
        cat = await plugin.personal_digest_section(CAT, now - timedelta(days=7), now)
        assert cat is not None and "P-2" not in cat.text and "red" not in cat.text
        await h.say(room, ANN, "!poll close P-3")
        bob = await plugin.personal_digest_section(BOB, now - timedelta(days=7), now)
        assert bob is not None and "P-3" not in bob.text


async def test_a_reminder_comes_at_its_moment_not_at_the_next_tick(tmp_path):
    # Issue 22 §5: a poll reminder could come up to ten minutes late.
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.advance(timedelta(minutes=3))  # 09:03: between two ten-minute ticks
        await h.say(room, ANN, "!poll Bins on Monday? | yes | no")  # closes 09:03 in a week
        await h.advance(timedelta(days=6, seconds=-60))
        assert not any("⏰" in t for t in h.texts(room))
        await h.advance(timedelta(seconds=61))  # 09:03:01 on Sunday
        reminder = h.last_text(room)
        assert reminder.startswith("⏰ P-1 closes in 24 hours"), reminder
        assert "late" not in reminder


async def test_a_reminder_sent_late_after_downtime_says_so(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Bins on Monday? | yes | no")  # reminder due Sun 09:00
        await h.bot.stop()
        h.clock.advance(timedelta(days=6, hours=2))  # down through the reminder's moment
        h = await restart(h)
        await h.advance(timedelta(minutes=1))
        reminder = next(t for t in h.texts(room) if t.startswith("⏰ P-1"))
        assert "Sorry, this reminder is late" in reminder


async def test_votes_and_rankings_by_option_text_as_typed_on_a_phone(tmp_path):
    # Issue 22 §4: "!vote P-1 Cakes, Mulled wine" and "!rank P-2 Bridges, Birds" were refused.
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Which stalls? | Cakes | Books | Mulled wine | up to two")
        await h.say(room, BOB, "!vote P-1 Cakes, Mulled wine")
        assert "your vote in P-1 is 1. Cakes, 3. Mulled wine." in h.last_text(room)
        await h.say(room, ANN, "!poll Which mural? | Birds | Bridges | Bikes | ranked")
        await h.say(room, BOB, "!rank P-2 Bridges, Birds")
        assert "your vote in P-2 is 2. Bridges, then 1. Birds." in h.last_text(room)
        await h.say(room, BOB, "!vote P-1 Tea")
        refusal = h.last_text(room)
        assert "I didn't understand 'Tea'. The options are 1 Cakes, 2 Books, 3 Mulled wine" in (
            refusal
        )


async def test_a_block_by_button_asks_for_its_reason_by_dm(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "!poll Adopt the new bin rota? | proposal")
        await tap(h, room, BOB, start_event(h).event_id, "block")
        bob = await h.transport.direct_room(BOB)
        asked = h.last_text(bob)
        assert asked.startswith("You pressed Block on P-1 (“Adopt the new bin rota?”)")
        assert "!vote P-1 block <your reason>" in asked
        await h.say(room, ANN, "!poll close P-1")
        assert "• @bob:test: (reason asked for)" in h.last_text(room)

        await h.say(room, ANN, "!poll Paint the hall green? | proposal")
        await tap(h, room, BOB, start_event(h).event_id, "block")
        h.clock.advance(timedelta(minutes=1))  # he answers the DM a little later
        await h.say(bob, BOB, "!vote P-2 block The colour was never discussed")
        await h.say(room, ANN, "!poll close P-2")
        results = h.last_text(room)
        assert "• @bob:test: The colour was never discussed" in results
        assert "reason asked for" not in results


async def test_a_block_reason_asked_for_is_not_lost_while_the_homeserver_is_away(tmp_path):
    # Promised with the vote: a send that fails is carried out by the engine later, once.
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "!poll Adopt the new bin rota? | proposal")
        h.transport.fail_sends = 1
        await tap(h, room, BOB, start_event(h).event_id, "block")
        bob = await h.transport.direct_room(BOB)
        assert not any("You pressed Block" in t for t in h.texts(bob))
        await h.advance(timedelta(minutes=2))  # the engine retries what it promised
        asked = [t for t in h.texts(bob) if t.startswith("You pressed Block on P-1")]
        assert len(asked) == 1


async def test_other_button_votes_ask_nothing(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "!poll Adopt the new bin rota? | proposal")
        sent = len(h.transport.sent)
        await tap(h, room, BOB, start_event(h).event_id, "agree")
        assert len(h.transport.sent) == sent


async def test_a_voter_asked_again_whose_first_vote_came_through_after_all_is_told_so(tmp_path):
    # After a stop a voter was asked to vote again, then their vote from before the stop was
    # handled after all (it takes part): their second vote is told it counted, not refused.
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Paint? | red | blue | secret")
        bob_dm = dm_room(h, BOB)
        await h.say(bob_dm, BOB, "!vote P-1 1")
        runner = h.bot.plugins["polls"].runner
        runner.asked_again.add((1, BOB))
        await h.say(bob_dm, BOB, "!vote P-1 1")
        assert "has been counted after all" in h.last_text(bob_dm)
        await h.say(bob_dm, BOB, "!vote P-1 2")  # told once; then one ballot each, as ever
        assert h.last_text(bob_dm).startswith("You have already voted in P-1")
