"""The weekly digest against a real Synapse, tried as residents would: a week of activity from
several plugins, a preview in a thread, bad input, a personal digest by DM, the scheduled post
exactly once across a crash and a restart, an operator's template and a broken one.

Time is the bot's own, moved by the test (``BotProcess.move_clock``), never waited for: the
room's digest is set to a minute well ahead of the real time, and the test moves the bot there.
The bot looks for due digests when it catches up after a start and on its own schedule, which
runs as soon as its clock is moved."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.integration.conftest import BotProcess, is_for, is_notice_from, room_with_bot
from tests.integration.test_once import DIGEST_POINTS, start_and_die_at

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def slot_ahead(minutes: int = 30) -> tuple[datetime, dict[str, Any]]:
    """A digest slot on a whole minute (UTC) that the real clock will not reach in a test."""
    at = (datetime.now(UTC) + timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    return at, {"day": DAYS[at.weekday()], "time": f"{at:%H:%M}"}


async def digests_in(resident, room: str, bot_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in await resident.messages(room, limit=100)
        if e.get("sender") == bot_id and e["content"].get("body", "").startswith("📰")
    ]


def last_look(bot: BotProcess) -> int:
    """When the bot last looked for due digests (its clock, UTC seconds), from its database."""
    path = bot.directory / "data" / "civicbot.sqlite3"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT value FROM digest_state WHERE key = 'last_tick'").fetchone()
    return int(row[0]) if row else 0


async def looked_at(bot: BotProcess, moment: datetime, timeout: float = 30) -> None:
    """Wait until the bot has looked for due digests at ``moment`` (its clock) or later."""
    deadline = asyncio.get_running_loop().time() + timeout
    while last_look(bot) < int(moment.timestamp()):
        assert bot.running, bot.log_text()[-3000:]
        assert asyncio.get_running_loop().time() < deadline, "the bot never looked"
        await asyncio.sleep(0.05)


async def test_a_week_of_activity_makes_one_digest_across_a_crash(residents, bots):
    ann, bob, cat = await residents("ann"), await residents("bob"), await residents("cat")
    slot, digest = slot_ahead()
    bot = await bots(bot={"timezone": "UTC"}, plugins={"digest": digest})
    room = await room_with_bot(ann, bot, bob, cat)

    ann.mark()
    await ann.send_text(room, "!poll Which mural? | Birds | Bikes")
    await ann.wait_for(room, is_notice_from(bot.user_id, "P-1"))
    await ann.send_text(room, "!poll Spend the grant on? | Benches | Lights | secret")
    await ann.wait_for(room, is_notice_from(bot.user_id, "P-2"))
    await cat.send_text(room, "!offer I have a ladder to lend | ongoing")
    await ann.wait_for(room, is_notice_from(bot.user_id, "O-"))
    await bob.send_text(room, "!need help moving a sofa on saturday | this week")
    await ann.wait_for(room, is_notice_from(bot.user_id, "N-"))
    root = await ann.send_text(room, "Who is coming to the litter pick?")
    for who in (bob, cat, bob):
        await who.send_event(room, "m.room.message", {
            "msgtype": "m.text", "body": "me!",
            "m.relates_to": {"rel_type": "m.thread", "event_id": root},
        })  # fmt: skip

    # A resident tries it: a preview in a thread, a typo, a subscription.
    bob.mark()
    ask = await bob.send_text(room, "!digest preview")
    preview = await bob.wait_for(room, is_notice_from(bot.user_id, "(Preview"))
    relation = preview["content"]["m.relates_to"]
    assert relation["rel_type"] == "m.thread" and relation["event_id"] == ask
    assert "P-1 Which mural?" in preview["content"]["body"]
    await bob.send_text(room, "!digest bogus")
    usage = await bob.wait_for(room, is_notice_from(bot.user_id, "I don't know !digest bogus"))
    assert "!digest preview" in usage["content"]["body"]
    await bob.send_text(room, "!digest subscribe")
    await bob.wait_for(room, is_notice_from(bot.user_id, "Subscribed"))
    await bob.send_text(room, "!meet Litter pick | every week on saturday 10:00")
    await bob.wait_for(room, is_notice_from(bot.user_id, "M-1"))
    await bob.send_text(room, "!rsvp M-1 going")
    await bob.wait_for(room, is_notice_from(bot.user_id, "going"))

    # A crash just before the slot (the bot had looked 8 s before it); back just after it,
    # it dies again where the digest is promised but not made, and where it is posted but not
    # yet recorded (the outbox's crash points).
    before = slot - timedelta(seconds=8)
    bot.move_clock_to(before)
    await looked_at(bot, before)
    assert await digests_in(ann, room, bot.user_id) == []
    bot.kill()
    bot.move_clock_to(slot + timedelta(seconds=3))
    ann.mark()
    bob.mark()
    for point in DIGEST_POINTS:
        await start_and_die_at(bot, point)
    await bot.start()
    posted = await ann.wait_for(room, is_notice_from(bot.user_id, "📰 This week in Elm Street"),
                                timeout=30)  # fmt: skip
    text, html = posted["content"]["body"], posted["content"]["formatted_body"]
    assert posted["content"]["msgtype"] == "m.notice"
    for part in ("Polls and decisions", "P-1 Which mural?", "Meetings", "ladder", "sofa",
                 "The week in numbers", f"https://matrix.to/#/{room}/{root}"):  # fmt: skip
        assert part in text, part
    assert "3 replies" in text and "<h3>" in html and "<script" not in html
    assert bob.user_id not in text and cat.user_id not in text  # numbers, not names

    # The personal digest: only to Bob, in a DM the bot made.
    dm = await bob.wait_for_invite_from(bot.user_id, exclude=[room], timeout=30)
    await bob.join(dm)
    personal = await bob.wait_for(dm, is_for(bot.user_id, bob.user_id, "📬"), timeout=30)
    assert "Litter pick" in personal["content"]["body"]
    assert sorted(await bob.joined_members(dm)) == sorted([bob.user_id, bot.user_id])

    # Restarted again: still exactly one digest.
    assert await bot.stop() == 0
    await bot.start()
    # The digest's look is armed once the bot has caught up: a clock moved before that is
    # not a look missed, only one that has not been arranged yet.
    await bot.caught_up()
    for _ in range(3):  # three looks for due digests, each a minute on
        bot.move_clock(timedelta(minutes=1))
        await looked_at(bot, bot.now() - timedelta(seconds=1))
    assert len(await digests_in(ann, room, bot.user_id)) == 1
    assert "ERROR" not in bot.log_text()


async def test_an_operator_template_is_used_and_a_broken_one_is_reported(
    residents, bots, tmp_path: Path
):
    ann, bob = await residents("ann"), await residents("bob")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "quiet.txt").write_text("📰 Nothing new on {{ room_name }} this week.")
    (mine / "digest.txt").write_text("📰 Our week in {{ room_name }}: {{ numbers.messages }}")
    bot = await bots(plugins={"digest": {"template_dir": str(mine)}})
    room = await room_with_bot(ann, bot, bob)
    ann.mark()
    await ann.send_text(room, "!digest now")
    done = await ann.wait_for(room, is_notice_from(bot.user_id, "📰"))
    # "!digest now" itself is this week's one message, so the week is not empty.
    assert done["content"]["body"] == "📰 Our week in Elm Street: 1"
    await bot.stop()

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "digest.txt").write_text("📰 {% for s in sections %}{{ s.title }")
    slot, digest = slot_ahead()
    bad = await bots(plugins={"digest": {**digest, "template_dir": str(broken)}})
    room = await room_with_bot(ann, bad, bob)
    ann.mark()
    await ann.send_text(room, "!digest now")
    reply = await ann.wait_for(room, is_notice_from(bad.user_id, "template is broken"))
    assert "digest.txt line 1" in reply["content"]["body"]
    assert "nothing" in reply["content"]["body"]
    bad.move_clock_to(slot + timedelta(seconds=6))
    await looked_at(bad, slot + timedelta(seconds=6))
    assert await digests_in(ann, room, bad.user_id) == []
    log = bad.log_text()
    assert "ERROR" in log and "digest.txt line 1" in log
