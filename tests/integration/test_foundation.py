"""The foundation against a real Synapse: joining, answering, restarts, crashes and outages."""

from __future__ import annotations

from tests.integration.conftest import is_notice_from, room_with_bot


async def test_invite_join_and_help(residents, bots):
    ann = await residents("ann")
    bot = await bots()
    room = await room_with_bot(ann, bot)
    ann.mark()
    asked = await ann.send_text(room, "!help")
    reply = await ann.wait_for(room, is_notice_from(bot.user_id, "Here is what I can do"))
    content = reply["content"]
    assert "!ping" in content["body"]
    assert "<code>!ping</code>" in content["formatted_body"]
    assert content["m.mentions"] == {}
    assert content["m.relates_to"]["m.in_reply_to"]["event_id"] == asked


async def test_ping_reports_version_and_plugins(residents, bots):
    ann = await residents("ann")
    bot = await bots()
    room = await room_with_bot(ann, bot)
    ann.mark()
    await ann.send_text(room, "!ping")
    reply = await ann.wait_for(room, is_notice_from(bot.user_id, "Pong"))
    assert "civicbot 0." in reply["content"]["body"]
    assert "help, ping" in reply["content"]["body"]
