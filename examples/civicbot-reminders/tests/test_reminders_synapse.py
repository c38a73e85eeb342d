"""The example plugin of docs/plugins.md, installed as a package (its entry point is how
``civicbot run`` finds it), against a real Synapse: its command answers, its job posts twice from
two due times, and a reminder set before a restart arrives after it.

It uses only civicbot's shipped test kit (``civicbot.testing.pytest_plugin``, active wherever
civicbot is installed): the fixtures ``residents`` and ``bots`` start a Synapse on loopback and
``civicbot run`` processes whose clock the test moves."""

from __future__ import annotations

from datetime import timedelta

import pytest

from civicbot.testing.pytest_plugin import is_for, is_notice_from, room_with_bot

pytestmark = pytest.mark.integration


def reminders_from(bot_id: str, room: str, events: list[dict]) -> list[str]:
    return [
        e["content"]["body"]
        for e in events
        if e.get("sender") == bot_id and e["content"].get("body", "").startswith("⏰")
    ]


async def test_the_example_plugin_answers_and_its_jobs_post_across_a_restart(residents, bots):
    ann = await residents("ann")
    bot = await bots()
    room = await room_with_bot(ann, bot)
    ann.mark()
    await ann.send_text(room, "!remind in 2 seconds | Kettle off")
    echo = await ann.wait_for(room, is_notice_from(bot.user_id, "R-1: I'll remind this room"))
    assert "Kettle off" in echo["content"]["body"]
    await ann.send_text(room, "!remind in 4 seconds | Kettle off")
    await ann.wait_for(room, is_notice_from(bot.user_id, "R-2: I'll remind this room"))
    bot.move_clock(timedelta(seconds=5))  # both are due: the bot's time, not waited for
    await ann.wait_for(room, is_for(bot.user_id, ann.user_id, "⏰ R-1: Kettle off"), timeout=20)
    await ann.wait_for(room, is_for(bot.user_id, ann.user_id, "⏰ R-2: Kettle off"), timeout=20)

    await ann.send_text(room, "!remind in 10 seconds | After the restart")
    await ann.wait_for(room, is_notice_from(bot.user_id, "R-3: I'll remind this room"))
    assert await bot.stop() == 0
    await bot.start()
    bot.move_clock(timedelta(seconds=10))  # due while running: on time, not "late"
    arrived = await ann.wait_for(
        room, is_for(bot.user_id, ann.user_id, "⏰ R-3: After the restart"), timeout=30
    )
    assert "offline" not in arrived["content"]["body"]  # re-armed, not made up late
    await bot.stop()
    await bot.start()
    ann.mark()
    await ann.send_text(room, "!ping")
    await ann.wait_for(room, is_notice_from(bot.user_id, "Pong"))
    sent = reminders_from(bot.user_id, room, await ann.messages(room, limit=100))
    assert sorted(sent) == ["⏰ R-1: Kettle off", "⏰ R-2: Kettle off", "⏰ R-3: After the restart"]
