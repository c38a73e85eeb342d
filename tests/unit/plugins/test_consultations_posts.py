"""A consultation's announcement stays true in the room (issue 22 §3): once it closes it stops
asking for answers and statements and says where the summary and the response are; once the
council responds it says so."""

from __future__ import annotations

from datetime import timedelta

from civicbot.testing.harness import BotHarness
from tests.unit.plugins.consultations_support import (
    ANN,
    CLLR,
    consult_harness,
    council_room,
    park,
)


def posted(h: BotHarness, room: str, start: str) -> str:
    return next(
        s.event_id
        for s in h.transport.sent
        if s.room_id == room and s.body.startswith(start) and "m.new_content" not in s.content
    )


async def test_a_closed_then_answered_consultation_edits_its_announcement(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park())
        post = posted(h, room, "📋 C-1 Consultation: Park improvements")
        assert "!answer C-1" in h.transport.shown(post) and "Closes" in h.transport.shown(post)

        await h.say(room, ANN, "!answer C-1 4 agree")
        await h.say(room, CLLR, "!consult close C-1")
        closed = h.transport.shown(post)
        assert closed.startswith("📋 C-1 Consultation: Park improvements")
        assert "Closed " in closed and "it takes no more answers" in closed
        assert "Which comes first?" in closed  # the questions stay, for the record
        assert "!answer" not in closed and "!statement" not in closed
        assert "The summary is in this thread" in closed

        await h.say(room, CLLR, "!respond C-1 Four benches and lights by spring")
        assert "The council has responded" in h.transport.shown(post)
        await h.say(room, CLLR, "!update C-1 in progress The benches are ordered")
        assert "The council has responded (now: in progress)" in h.transport.shown(post)


async def test_a_consultation_closed_at_its_deadline_edits_its_announcement(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await h.say(room, CLLR, park())
        post = posted(h, room, "📋 C-1 Consultation: Park improvements")
        await h.bot.handle_batch([])  # caught up
        await h.advance(timedelta(days=8))
        assert "it takes no more answers" in h.transport.shown(post)
        assert "!answer" not in h.transport.shown(post)
