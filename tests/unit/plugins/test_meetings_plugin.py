"""The meetings plugin through the real bot (fake transport, controllable clock): a resident's
view of proposing, answering, fixing, calendar files and bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from civicbot.core.events import matrix_to
from tests.unit.plugins.meetings_support import (
    ANN,
    BOB,
    CAT,
    END,
    RESPONSE,
    START,
    ask,
    element_tap,
    files,
    last_calendar,
    meetings_harness,
    sent_of,
)

TEXT = "org.matrix.msc1767.text"
PROPOSE = "!meet Litter pick planning | tue 8 dec 18:00 | sat 12 dec 10am | for 90 minutes"


async def test_propose_answer_by_command_and_by_poll_then_fix_with_an_ics(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        echo = await ask(h, room, ANN, PROPOSE + " | at Church Hall")
        assert echo.startswith("📅 M-1: Litter pick planning\n")
        assert "1. Tue 8 Dec 18:00–19:30 Europe/London" in echo
        assert "2. Sat 12 Dec 10:00–11:30 Europe/London" in echo
        # One poll per time, one answer each: Element Web sends one answer per tap, so a poll
        # of all the times could only ever hold one "yes".
        first, second = sent_of(h, START, room)[-2:]
        for start, when in ((first, "time 1: Tue 8 Dec"), (second, "time 2: Sat 12 Dec")):
            block = start.content[START]
            assert block["max_selections"] == 1 and when in block["question"][TEXT]
            assert [a["id"] for a in block["answers"]] == ["yes", "ifneedbe", "no"]
            assert [a[TEXT] for a in block["answers"]] == ["Yes", "If need be", "No"]
        table = sent_of(h, "m.room.message", room)[-1]
        assert table.body.startswith("🗓️ M-1 availability (0 people have answered)")

        reply = await ask(h, room, BOB, "!avail M-1 1y 2?")
        assert reply == "Thanks, noted for M-1: yes 1; if need be 2."
        await h.send(room, CAT, RESPONSE, element_tap(second.event_id, "yes"))
        await h.send(room, ANN, RESPONSE, element_tap(first.event_id, "yes"))
        await h.send(room, ANN, RESPONSE, element_tap(second.event_id, "yes"))
        await h.send(room, ANN, RESPONSE, element_tap(first.event_id, "no"))  # Ann changes
        edits = [
            s
            for s in sent_of(h, "m.room.message", room)
            if (s.content.get("m.relates_to") or {}).get("rel_type") == "m.replace"
        ]
        assert len(edits) == 5  # one per answer, all editing the one table message
        assert {e.content["m.relates_to"]["event_id"] for e in edits} == {table.event_id}
        latest = edits[-1].content["m.new_content"]["body"]
        assert "(3 people have answered)" in latest
        assert latest.splitlines()[1] == (
            "2. Sat 12 Dec 10:00–11:30 Europe/London: 2 yes (ann, cat), 1 if need be (bob)"
        )
        assert (
            latest.splitlines()[2]
            == "1. Tue 8 Dec 18:00–19:30 Europe/London: 1 yes (bob), 0 if need be"
        )

        fixed = await ask(h, room, ANN, "!meet fix M-1 2")
        assert fixed.startswith("✅ M-1 is fixed: Litter pick planning, Sat 12 Dec 10:00–11:30")
        ended = {e.content["m.relates_to"]["event_id"] for e in sent_of(h, END, room)}
        assert ended == {first.event_id, second.event_id}
        # No file in the room (an m.file notifies every member): it goes by DM to those going.
        assert not files(h, room)
        going = await ask(h, room, BOB, "!rsvp M-1 going")
        assert "See you there: M-1" in going and "calendar file by direct message" in going
        bob_dm = await h.transport.direct_room(BOB)
        ics = files(h, bob_dm)[-1]
        assert ics.content["info"]["mimetype"] == "text/calendar"
        assert ics.content["body"] == "M-1-litter-pick-planning.ics"
        event = last_calendar(h, bob_dm).walk("VEVENT")[0]
        assert event["DTSTART"].dt.astimezone(UTC) == datetime(2026, 12, 12, 10, tzinfo=UTC)
        assert event["LOCATION"] == "Church Hall"
        # The room link in the file opens from any homeserver: it names servers to go via.
        assert f"https://matrix.to/#/{room}?via=test" in str(event["DESCRIPTION"])
        assert str(event["UID"]).endswith("@test")
        assert not files(h)[:-1] or all(f.room_id != room for f in files(h))
        late = await ask(h, room, CAT, "!avail M-1 1y")
        assert late.startswith("M-1 is already fixed. Say whether you're coming with !rsvp M-1")


async def test_bad_input_gets_a_reply_saying_what_to_type(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        unreadable = await ask(h, room, ANN, "!meet Picnic | blue moon o'clock")
        assert "couldn't read 'blue moon o'clock' as a time" in unreadable
        assert "friday 18:00" in unreadable
        past = await ask(h, room, ANN, "!meet Picnic | 1 nov 2026 10:00")
        assert "is in the past" in past and "Give a time in the future" in past
        zone = await ask(h, room, ANN, "!tz Mars/Olympus_Mons")
        assert "I don't know the time zone 'Mars/Olympus_Mons'" in zone
        assert "Europe/Warsaw" in zone
        too_many = "!meet Picnic | " + " | ".join(f"{d} dec 2026 10:00" for d in range(1, 23))
        assert "at most 20 fit" in await ask(h, room, ANN, too_many)

        await ask(h, room, ANN, PROPOSE)
        other = await ask(h, room, BOB, "!meet fix M-1 1")
        assert other == (
            "Only the organiser of M-1 or a moderator can fix it. To say when you can, type "
            "!avail M-1 1y 2? 3n."
        )
        early = await ask(h, room, BOB, "!rsvp M-1 going")
        assert "M-1 has no time yet" in early and "!avail M-1 1y 2? 3n" in early
        assert "!rsvp M-1 going" in early
        out_of_range = await ask(h, room, ANN, "!meet fix M-1 7")
        assert out_of_range == "Pick a time by its number, 1 to 2, like: !meet fix M-1 2"
        assert "There is no time 3" in await ask(h, room, BOB, "!avail M-1 3y")
        assert "couldn't read 'sometimes'" in await ask(h, room, BOB, "!avail M-1 sometimes")
        missing = await ask(h, room, BOB, "!avail M-9 1y")
        assert missing.startswith("I can't find M-9 in any room you're in.")
        assert await ask(h, room, ANN, "!meet fix") == "To fix a meeting, type !meet fix M-3 2"
        # None of it stored anything: still one meeting, nobody has answered.
        assert "No meetings" not in await ask(h, room, ANN, "!meetings")
        assert h.bot  # the bot carries on
        assert "Thanks, noted for M-1" in await ask(h, room, BOB, "!avail M-1 all")


async def test_a_moderator_may_fix_and_the_organiser_moves_and_cancels(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await ask(h, room, ANN, PROPOSE)
        await ask(h, room, BOB, "!rsvp M-1 going")  # refused: not fixed
        assert (await ask(h, room, "@mod:test", "!meet fix M-1 1")).startswith("✅ M-1 is fixed")
        await ask(h, room, BOB, "!rsvp M-1 going")
        dm = "!dm-bob-test:test"
        first = last_calendar(h, dm).walk("VEVENT")[0]
        await ask(h, room, ANN, "!meet move M-1 wed 9 dec 19:00")
        assert "has moved to Wed 9 Dec 19:00–20:30" in h.texts(room)[-1]
        moved = last_calendar(h, dm).walk("VEVENT")[0]
        assert moved["UID"] == first["UID"] and moved["SEQUENCE"] > first["SEQUENCE"]
        assert moved["DTSTART"].dt.astimezone(UTC) == datetime(2026, 12, 9, 19, tzinfo=UTC)
        told = [s for s in sent_of(h, "m.room.message", dm) if "has moved to" in s.body]
        assert told  # Bob is going: he is told, and his client notifies him
        assert told[-1].content["msgtype"] == "m.text"
        assert told[-1].content["m.mentions"] == {"user_ids": [BOB]}
        await ask(h, room, ANN, "!meet cancel M-1")
        assert not files(h, room)
        cancelled = last_calendar(h, dm)
        assert cancelled["METHOD"] == "PUBLISH"
        event = cancelled.walk("VEVENT")[0]
        assert event["STATUS"] == "CANCELLED" and event["SEQUENCE"] > moved["SEQUENCE"]
        assert "❌ M-1 is cancelled" in h.texts(dm)[-2]
        await h.advance(timedelta(days=20))
        assert not [t for t in h.texts(room) if t.startswith("⏰")]


async def test_decide_by_fixes_the_best_time_and_a_tie_goes_to_the_earlier(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await ask(h, room, ANN, PROPOSE + " | decide by fri 27 nov 12:00")
        await ask(h, room, BOB, "!avail M-1 1 2")
        await ask(h, room, CAT, "!avail M-1 1? 2?")
        await h.advance(timedelta(days=3))
        assert not any(t.startswith("✅") for t in h.texts(room))
        await h.advance(timedelta(days=2))
        announcement = next(t for t in h.texts(room) if t.startswith("✅"))
        assert "M-1 is fixed: Litter pick planning, Tue 8 Dec 18:00–19:30" in announcement
        assert "Fixed automatically at the deadline: time 1" in announcement
        assert "tied with 2; a tie goes to the earlier time" in announcement
        assert not files(h, room)  # the calendar file goes to those going, by DM


async def test_forgotten_then_answering_again_counts_once(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await ask(h, room, ANN, PROPOSE)
        await ask(h, room, BOB, "!avail M-1 1y")
        plugin = h.bot.plugins["meetings"]
        report = await plugin.forget_user(BOB)
        assert report is not None and report.anonymised == 2
        data = await plugin.export_user_data(BOB)
        assert data is None
        await ask(h, room, BOB, "!avail M-1 2y")
        body = sent_of(h, "m.room.message", room)[-2].content["m.new_content"]["body"]
        assert "(1 person has answered)" in body
        assert "2. Sat 12 Dec 10:00–11:30 Europe/London: 1 yes (someone)" in body
        rows = await h.db.fetchall("SELECT DISTINCT person FROM meetings_availability")
        assert [r[0] for r in rows] != [BOB] and len(rows) == 1


async def test_minutes_tz_and_listing(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await ask(h, room, ANN, PROPOSE)
        await ask(h, room, ANN, "!meet fix M-1 1")
        early = await ask(h, room, ANN, "!minutes M-1 We agreed")
        assert "M-1 hasn't happened yet" in early
        assert "Europe/Warsaw" in await ask(h, room, BOB, "!tz europe/warsaw")
        listing = await ask(h, room, BOB, "!meetings")
        assert "M-1: Litter pick planning, Tue 8 Dec 19:00–20:30 Europe/Warsaw" in listing
        await h.advance(timedelta(days=16))
        await h.say(room, ANN, "!minutes M-1 Litter pick on 12 Dec.\nBags from the hall.")
        minutes = next(s for s in reversed(h.transport.sent) if s.body.startswith("📝"))
        assert minutes.body == (
            "📝 Minutes of M-1 Litter pick planning:\nLitter pick on 12 Dec.\nBags from the hall."
        )
        plugin = h.bot.plugins["meetings"]
        now = h.clock.now() + timedelta(minutes=1)
        section = await plugin.digest_section(room, now - timedelta(days=7), now)
        assert section is not None and "Bags from the hall." in section.text
        # The minutes link to the notice the bot posted in the meeting's thread.
        link = matrix_to(room, minutes.event_id)
        assert f"Bags from the hall. {link}" in section.text
        assert f'<a href="{link}">M-1 Litter pick planning</a>: Litter pick' in section.html
        assert "12 Dec.<br>Bags from the hall." in section.html


async def test_export_personal_digest_and_listing_in_a_dm(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await ask(h, room, ANN, PROPOSE)
        await ask(h, room, BOB, "!avail M-1 1y 2n")
        await ask(h, room, ANN, "!meet fix M-1 1")
        await ask(h, room, BOB, "!rsvp M-1 going")
        plugin = h.bot.plugins["meetings"]
        data = await plugin.export_user_data(BOB)
        assert data is not None
        assert [a["answer"] for a in data["availability"]] == ["yes", "no"]
        assert data["rsvps"][0]["status"] == "going" and data["rsvps"][0]["meeting"] == "M-1"
        now = h.clock.now() + timedelta(days=10)
        section = await plugin.personal_digest_section(BOB, now - timedelta(days=7), now)
        assert section is not None
        assert "M-1: Litter pick planning, Tue 8 Dec 18:00–19:30 Europe/London" in section.text
        announced = (await plugin.store.get(1)).announce_event_id
        assert announced and section.text.endswith(" " + matrix_to(room, announced))
        assert f'<a href="{matrix_to(room, announced)}">M-1: Litter pick planning</a>' in (
            section.html
        )
        assert await plugin.personal_digest_section(ANN, now - timedelta(days=7), now) is None
        dm = "!dm-bob-test:test"
        await h.transport.direct_room(BOB)
        listing = await ask(h, dm, BOB, "!meetings")
        assert "M-1: Litter pick planning" in listing and room in listing


async def test_cancelling_a_proposal_ends_its_poll_and_takes_no_more_answers(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await ask(h, room, ANN, PROPOSE)
        start = sent_of(h, START, room)[-1]
        assert (
            await ask(h, room, ANN, "!meet cancel M-1")
            == "❌ M-1 is cancelled: Litter pick planning."
        )
        end = sent_of(h, END, room)[-1]
        assert end.content["m.relates_to"]["event_id"] == start.event_id
        assert end.content["body"] == "M-1 is cancelled; this poll is closed."
        assert not files(h, room), "a meeting that never had a time has no calendar entry"
        before = len(h.transport.sent)
        await h.send(room, BOB, RESPONSE, element_tap(start.event_id, "1"))
        assert len(h.transport.sent) == before
        assert (await ask(h, room, BOB, "!avail M-1 1")).startswith("M-1 was cancelled.")


async def test_more_times_than_fit_as_polls_are_answered_by_typing(tmp_path):
    """Six or more candidate times would fill the room with polls: typed answers only, and
    the proposal says so."""
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        times = " | ".join(f"{day} dec 2026 18:00" for day in range(7, 13))
        echo = await ask(h, room, ANN, f"!meet Litter pick | {times}")
        assert "6. Sat 12 Dec" in echo
        assert "answer the poll" not in echo and "type !avail M-1 1y 2? 3n" in echo
        assert not sent_of(h, START, room)
        assert "Thanks, noted for M-1" in await ask(h, room, BOB, "!avail M-1 6y")


async def test_a_weekday_that_contradicts_the_date_is_asked_about_not_guessed(tmp_path):
    # Issue 22 §4: "tue 2 dec 18:00 | sat 6 dec 10am" gave Thu 2 Dec 2027 and Sun 6 Dec.
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN])
        reply = await ask(h, room, ANN, "!meet Bake sale | tue 2 dec 18:00 | sat 6 dec 10am")
        assert "2 Dec is a Wednesday: did you mean Wed 2 Dec or Tue 1 Dec?" in reply
        assert "M-1" not in reply
        echo = await ask(h, room, ANN, "!meet Bake sale | next thurs 7pm | sat 10am")
        assert echo.startswith("📅 M-1: Bake sale\n"), echo
        assert "Thu 26 Nov 19:00" in echo and "Sat 28 Nov 10:00" in echo


async def test_rsvp_in_the_room_answers_in_the_rooms_zone(tmp_path):
    # Issue 22 §5: "!rsvp M-1 perhaps" in the room was answered in the person's own zone.
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await ask(h, room, ANN, PROPOSE)
        await ask(h, room, ANN, "!meet fix M-1 1")
        await ask(h, room, BOB, "!tz europe/warsaw")
        reply = await ask(h, room, BOB, "!rsvp M-1 perhaps")
        assert "Tue 8 Dec 18:00" in reply and "Europe/London" in reply, reply
        assert "Warsaw" not in reply


async def test_meetings_in_a_dm_name_their_rooms_and_come_in_time_order(tmp_path):
    # Issue 22 §5: a DM's !meetings showed raw room ids, in the order they were made.
    async with meetings_harness(tmp_path) as h:
        street = h.room(members=[ANN])
        park = h.room(members=[ANN])
        h.transport.rooms[street].state[("m.room.name", "")] = {"name": "Elm Road"}
        h.transport.rooms[park].state[("m.room.name", "")] = {"name": "Park friends"}
        await ask(h, street, ANN, "!meet Late one | sat 12 dec 10am")
        await ask(h, street, ANN, "!meet fix M-1 1")
        await ask(h, park, ANN, "!meet Early one | tue 8 dec 18:00")
        await ask(h, park, ANN, "!meet fix M-2 1")
        dm = await h.transport.direct_room(ANN)
        listing = await ask(h, dm, ANN, "!meetings")
        assert "(Elm Road)" in listing and "(Park friends)" in listing, listing
        assert street not in listing and park not in listing
        assert listing.index("M-2: Early one") < listing.index("M-1: Late one")


async def test_a_meeting_made_from_a_relative_time_is_on_the_minute(tmp_path):
    # Issue 22 §5: DTSTART kept the seconds of "in 5 minutes", and !minutes was refused at
    # 03:05:23 for a meeting at 03:05.
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.advance(timedelta(seconds=26))  # 09:00:26
        echo = await ask(h, room, ANN, "!meet Quick chat | in 5 minutes")
        assert "Mon 23 Nov 09:05" in echo, echo
        await ask(h, room, ANN, "!meet fix M-1 1")
        await ask(h, room, BOB, "!rsvp M-1 going")
        dtstart = last_calendar(h).walk("VEVENT")[0]["DTSTART"].dt
        assert (dtstart.minute, dtstart.second) == (5, 0)
        await h.advance(timedelta(minutes=4, seconds=57))  # 09:05:23
        await h.say(room, ANN, "!minutes M-1 Done.")
        assert "hasn't happened yet" not in h.last_text(room)
        assert h.last_text(room) == "Recorded the minutes of M-1 in its thread."
