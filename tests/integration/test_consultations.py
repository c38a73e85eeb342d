"""Consultations against a real Synapse: a councillor posts, residents answer in the thread, by
a DM walk-through and anonymously, the council responds, and the room is told when it doesn't."""

from __future__ import annotations

import asyncio
import sqlite3

from tests.integration.conftest import is_for, is_notice_from, room_with_bot

QUESTIONS = (
    "text: What would make the park better?\n"
    "one: Which comes first? Benches / Lights / Trees\n"
    "statement: The park should close at dusk"
)
SECRET_TEXT = "a quiet pond by the oak tree"


async def say(resident, room: str, text: str, bot, expect: str, **kwargs) -> str:
    resident.mark()
    await resident.send_text(room, text, **kwargs)
    event = await resident.wait_for(room, is_notice_from(bot.user_id, expect))
    return str(event["content"]["body"])


async def open_dm(resident, bot) -> str:
    dm = await resident.create_room(invite=[bot.user_id], is_direct=True)
    resident.mark()
    await resident.wait_for(dm, is_notice_from(bot.user_id, "Hello"), timeout=30)
    return dm


async def test_post_answer_three_ways_close_respond_and_overdue_once(residents, bots):
    mod, cllr = await residents("mod"), await residents("cllr")
    bob, cat, dan = await residents("bob"), await residents("cat"), await residents("dan")
    # respond_within_days = 0: the accountability notice is due at the close itself, so a
    # restart right after shows it is not sent twice; counts_minimum = 1 lets one anonymous
    # answer be counted.
    bot = await bots(
        plugins={"consultations": {"respond_within_days": 0, "counts_minimum": 1}},
        bot={"timezone": "Europe/London"},
    )
    room = await room_with_bot(mod, bot, cllr, bob, cat, dan)
    refusal = await say(
        cllr, room, f"!consult Park | closes in 2 hours | {QUESTIONS}", bot, "Sorry"
    )
    assert f"!role grant {cllr.user_id} councillor" in refusal
    await say(mod, room, f"!role grant {cllr.user_id} councillor", bot, "Granted")

    cllr.mark()
    await cllr.send_text(room, f"!consult Park improvements\ncloses in 2 hours\n{QUESTIONS}")
    root = await cllr.wait_for(room, is_notice_from(bot.user_id, "C-1 Consultation"))
    assert "2. Which comes first? (choose one)" in root["content"]["body"]
    await say(cllr, room, f"!consult Pond\nanonymous\ncloses in 2 hours\n{QUESTIONS}", bot, "C-2")

    # Bob answers in the thread, with bad input first.
    thread = {"thread_root": root["event_id"]}
    assert "C-1 has questions 1 to 3" in await say(
        bob, room, "!answer C-1 7 agree", bot, "questions", **thread
    )
    assert "no choice “z”" in await say(bob, room, "!answer C-1 2 z", bot, "choice", **thread)
    for text in ("!answer C-1 1 More benches", "!answer C-1 2 b", "!answer C-1 3 agree"):
        await say(bob, room, text, bot, "is noted", **thread)
    await say(bob, room, "!answer C-1 follow", bot, "I'll send you", **thread)

    # Cat asks in the room; the bot opens a DM with her and walks her through it there.
    await say(cat, room, "!answer C-1", bot, "I've sent you the questions by direct message")
    cat_dm = await cat.wait_for_invite()
    await cat.join(cat_dm)
    await cat.wait_for(cat_dm, is_for(bot.user_id, cat.user_id, "Question 1 of 3"))
    await say(cat, cat_dm, "Lights and a cafe", bot, "Question 2 of 3")
    await say(cat, cat_dm, "c", bot, "Question 3 of 3")
    await say(cat, cat_dm, "agree", bot, "Type yes or no")
    await say(cat, cat_dm, "yes", bot, "your answers to C-1 are in")

    # Dan answers the anonymous one: asked in the room, the questions come by DM.
    await say(dan, room, "!answer C-2", bot, "C-2 is anonymous, so please don't answer here")
    dan_dm = await dan.wait_for_invite()
    await dan.join(dan_dm)
    await dan.wait_for(dan_dm, is_for(bot.user_id, dan.user_id, "Question 1 of 3"))
    await say(dan, dan_dm, SECRET_TEXT, bot, "Question 2 of 3")
    await say(dan, dan_dm, "a", bot, "Question 3 of 3")
    await say(dan, dan_dm, "disagree", bot, "Type yes or no")
    await say(dan, dan_dm, "yes", bot, "stored anonymously")

    cllr_dm = await open_dm(cllr, bot)
    cllr.mark()
    await cllr.send_text(room, "!consult close C-1")
    summary = (await cllr.wait_for(room, is_notice_from(bot.user_id, "Summary of C-1")))["content"]
    body = summary["body"]
    assert summary["m.relates_to"]["event_id"] == root["event_id"]
    assert "2 people answered, 6 answers in all." in body
    assert f"{bob.user_id}: More benches" in body and f"{cat.user_id}: Lights and a cafe" in body
    assert "   b) Lights: 1\n   c) Trees: 1" in body
    assert "agree 2 · disagree 0 · pass 0" in body
    csv_file = await cllr.wait_for(
        cllr_dm, lambda e: e.get("content", {}).get("msgtype") == "m.file"
    )
    assert csv_file["content"]["body"] == "consultation-C-1.csv"
    overdue = await cllr.wait_for(room, is_notice_from(bot.user_id, "still waiting for a response"))
    assert cllr.user_id in overdue["content"]["body"]

    cllr.mark()
    await cllr.send_text(room, "!consult close C-2")
    anonymous = (await cllr.wait_for(room, is_notice_from(bot.user_id, "Summary of C-2")))[
        "content"
    ]
    assert "1 person answered, 3 answers in all." in anonymous["body"]
    assert "agree 0 · disagree 1 · pass 0" in anonymous["body"]
    assert dan.user_id not in anonymous["body"] and SECRET_TEXT not in anonymous["body"]

    assert "has closed, so it takes no more answers" in await say(
        bob, room, "!answer C-1 1 late", bot, "no more answers"
    )
    assert f"Only the councillor of C-1 ({cllr.user_id})" in await say(
        cat, room, "!respond C-1 Nothing", bot, "Only the councillor"
    )

    # A restart: the notice for C-1 (and C-2's) went out once each and stays that way.
    assert await bot.stop() == 0
    await bot.start()
    await say(mod, room, "!consultations", bot, "Consultations here")
    await asyncio.sleep(1)  # anything the restart would wrongly repeat comes now
    notices = [
        e
        for e in await mod.messages(room, limit=100)
        if e.get("sender") == bot.user_id and "still waiting" in e["content"].get("body", "")
    ]
    assert sorted(e["content"]["body"][:5] for e in notices) == ["⏳ C-1", "⏳ C-2"]

    # The response reaches the thread and those who opted in, by DM.
    bob_dm = await open_dm(bob, bot)
    bob.mark(), cat.mark(), dan.mark()
    receipt = await say(cllr, room, "!respond C-1 Four benches by spring", bot, "Posted")
    assert "sent by direct message to 2 people" in receipt
    for resident, dm in ((bob, bob_dm), (cat, cat_dm)):
        await resident.wait_for(dm, is_for(bot.user_id, resident.user_id, "Four benches by spring"))
    await say(cllr, room, "!respond C-2 A pond is planned", bot, "Posted")
    await dan.wait_for(dan_dm, is_for(bot.user_id, dan.user_id, "A pond is planned"))
    assert "responded" in await say(mod, room, "!consultations", bot, "Consultations here")
    assert await bot.stop() == 0

    # No table, no page of either database file and no log line links Dan to his answer.
    data = bot.directory / "data"
    main = sqlite3.connect(data / "civicbot.sqlite3")
    try:
        for (table,) in main.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            for row in main.execute(f"SELECT * FROM {table}"):
                assert SECRET_TEXT not in " ".join(map(str, row)), table
    finally:
        main.close()
    for path in data.glob("*.sqlite3*"):
        raw = path.read_bytes()
        at = raw.find(SECRET_TEXT.encode())
        if at < 0:
            continue
        assert path.name == "private-consultations.sqlite3"  # not the main file nor a log
        (size,) = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()
        page = raw[at // size * size : (at // size + 1) * size]
        assert dan.user_id.encode() not in page  # who and what never share a page
    anon = sqlite3.connect(data / "private-consultations.sqlite3")  # the private store
    try:
        voters = anon.execute("SELECT item, who, extra, batch FROM private_participants")
        assert voters.fetchall() == [("consultation:2", dan.user_id, "follow", "")]
        bundles = anon.execute("SELECT * FROM private_contributions").fetchall()
        assert (
            len(bundles) == 1 and SECRET_TEXT in bundles[0][2] and dan.user_id not in str(bundles)
        )
    finally:
        anon.close()
    log = bot.log_text()
    assert SECRET_TEXT not in log
    for line in log.splitlines():
        assert dan.user_id not in line or "consultation" not in line.lower(), line
