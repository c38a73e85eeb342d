"""Meetings against a real Synapse: residents answer by command and with exactly the poll
events Element sends, the .ics is downloaded from the homeserver and parsed, and a reminder
fires exactly once across a restart of ``civicbot run`` (the bot's clock moved to it)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import icalendar

from tests.integration.conftest import agreed_start, is_for, is_notice_from, room_with_bot
from tests.integration.test_once import REMINDER_POINTS, start_and_die_at

START = "org.matrix.msc3381.poll.start"
RESPONSE = "org.matrix.msc3381.poll.response"
END = "org.matrix.msc3381.poll.end"


def of_type(sender: str, event_type: str):
    return lambda e: e.get("type") == event_type and e.get("sender") == sender


def table_edit(sender: str, contains: str):
    def check(event: dict) -> bool:
        content = event.get("content") or {}
        relation = content.get("m.relates_to") or {}
        return (
            event.get("sender") == sender
            and relation.get("rel_type") == "m.replace"
            and contains in (content.get("m.new_content") or {}).get("body", "")
        )

    return check


def is_file(sender: str):
    return lambda e: (
        e.get("sender") == sender and (e.get("content") or {}).get("msgtype") == "m.file"
    )


async def test_propose_answer_fix_download_the_ics_and_be_reminded_once(residents, bots):
    ann, bob = await residents("ann"), await residents("bob")
    # Warsaw is UTC+1 in January: the .ics must say 18:30 UTC for 19:30 typed. Reminders come
    # 100 s before a meeting so that one fires while the test waits.
    bot = await bots(
        bot={"timezone": "Europe/Warsaw"}, plugins={"meetings": {"reminders": ["100s"]}}
    )
    room = await room_with_bot(ann, bot, bob)

    ann.mark()
    await ann.send_text(room, "!meet Litter pick planning | 2027-01-14 19:30 | 2027-01-16 10:00")
    echo = await ann.wait_for(room, is_notice_from(bot.user_id, "📅 M-1: Litter pick planning"))
    assert "1. Thu 14 Jan 2027 19:30–20:30 Europe/Warsaw" in echo["content"]["body"]
    assert "2. Sat 16 Jan 2027 10:00–11:00 Europe/Warsaw" in echo["content"]["body"]
    # One yes / if need be / no poll per time (Element Web sends one answer per tap).
    table = await ann.wait_for(room, is_notice_from(bot.user_id, "M-1 availability"))

    def time_poll(number: int):
        def check(event: dict) -> bool:
            block = event["content"].get(START) or {}
            text = (block.get("question") or {}).get("org.matrix.msc1767.text", "")
            return of_type(bot.user_id, START)(event) and f"time {number}:" in text

        return check

    polls = [await ann.wait_for(room, time_poll(n)) for n in (1, 2)]
    assert [p["content"][START]["max_selections"] for p in polls] == [1, 1]
    second = polls[1]

    await bob.send_text(room, "!avail M-1 1y 2?")
    await bob.wait_for(room, is_notice_from(bot.user_id, "Thanks, noted for M-1: yes 1"))
    # What Element Web sends when Ann taps "Yes" in the second time's poll.
    await ann.send_event(
        room,
        RESPONSE,
        {
            "m.relates_to": {"rel_type": "m.reference", "event_id": second["event_id"]},
            RESPONSE: {"answers": ["yes"]},
        },
    )
    edit = await ann.wait_for(room, table_edit(bot.user_id, "(2 people have answered)"))
    assert edit["content"]["m.relates_to"]["event_id"] == table["event_id"]
    rows = edit["content"]["m.new_content"]["body"].splitlines()
    assert rows[1].startswith("2. Sat 16 Jan 2027 10:00–11:00 Europe/Warsaw: 1 yes (ann")
    assert "1 if need be (bob" in rows[1]

    bob.mark()
    await bob.send_text(room, "!meet fix M-1 1")
    await bob.wait_for(room, is_notice_from(bot.user_id, "Only the organiser of M-1"))
    await bob.send_text(room, "!rsvp M-1 going")
    await bob.wait_for(room, is_notice_from(bot.user_id, "M-1 has no time yet"))

    ann.mark()
    await ann.send_text(room, "!meet fix M-1 1")
    await ann.wait_for(room, is_notice_from(bot.user_id, "✅ M-1 is fixed: Litter pick planning"))
    await ann.wait_for(room, of_type(bot.user_id, END))
    # The calendar file comes by DM to whoever is going, never into the room (an m.file there
    # would notify every member).
    bob.mark()
    await bob.send_text(room, "!rsvp M-1 going")
    await bob.wait_for(room, is_notice_from(bot.user_id, "See you there: M-1"))
    dm = await bob.wait_for_invite()
    await bob.join(dm)
    attached = await bob.wait_for(dm, is_file(bot.user_id))
    assert attached["content"]["info"]["mimetype"] == "text/calendar"
    data = await bob.download(attached["content"]["url"])
    event = icalendar.Calendar.from_ical(data).walk("VEVENT")[0]
    assert event["DTSTART"].dt.astimezone(UTC) == datetime(2027, 1, 14, 18, 30, tzinfo=UTC)
    assert str(event["DTSTART"].params["TZID"]) == "Europe/Warsaw"
    assert not [e for e in await ann.messages(room, limit=100) if is_file(bot.user_id)(e)]

    # A meeting three minutes from now, on the minute (so 2.5 to 3.5 minutes away): its
    # reminder, 100 s before, is due 50 s from now at the earliest (bot time).
    ann.mark()
    await ann.send_text(room, "!meet Quick check-in | in 3 minutes | in 3 hours")
    await ann.wait_for(room, is_notice_from(bot.user_id, "📅 M-2"))
    await ann.send_text(room, "!meet fix M-2 1")
    fixed = await ann.wait_for(room, is_notice_from(bot.user_id, "✅ M-2 is fixed"))
    starts = agreed_start(fixed["content"]["body"], bot.now(), "Europe/Warsaw")
    await bob.send_text(room, "!rsvp M-2 going")
    await bob.wait_for(room, is_notice_from(bot.user_id, "See you there: M-2"))
    assert await bot.stop() == 0  # restart between fixing and reminding
    bot.move_clock_to(starts - timedelta(seconds=90))  # past the reminder's time, not the start
    for point in REMINDER_POINTS:  # and it dies as it reminds, at each of the outbox's steps
        await start_and_die_at(bot, point)
    await bot.start()
    reminder = await ann.wait_for(
        room, is_notice_from(bot.user_id, "⏰ M-2: Quick check-in starts"), timeout=60
    )
    assert "Sorry" not in reminder["content"]["body"]
    await asyncio.sleep(3)
    bodies = [e["content"].get("body", "") for e in await ann.messages(room, limit=100)]
    assert sum(b.startswith("⏰ M-2") for b in bodies) == 1
    # Bob said he is going: the reminder reaches him privately too, in the DM the bot made.
    await bob.wait_for(dm, is_for(bot.user_id, bob.user_id, "⏰ M-2: Quick check-in starts"))
    told = [e["content"].get("body", "") for e in await bob.messages(dm, limit=100)]
    assert sum(b.startswith("⏰ M-2") for b in told) == 1
    assert sorted(await bob.joined_members(dm)) == sorted([bob.user_id, bot.user_id])
