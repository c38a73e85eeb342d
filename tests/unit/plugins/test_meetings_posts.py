"""A meeting's posts stay true in the room (issue 22 §3): the proposal stops asking when people
can once the meeting is fixed, and the proposal and the fixed announcement show a move's new
time and a cancellation."""

from __future__ import annotations

from civicbot.testing.harness import BotHarness
from tests.unit.plugins.meetings_support import ANN, BOB, meetings_harness

PROPOSE = "!meet Street party planning | tue 8 dec 18:00 | sat 12 dec 10am | for 90 minutes"


def posted(h: BotHarness, room: str, start: str) -> str:
    return next(
        s.event_id
        for s in h.transport.sent
        if s.room_id == room
        and s.body.startswith(start)
        and "m.new_content" not in s.content  # the post, not an edit of it
    )


async def test_fixed_moved_then_cancelled_meeting_edits_its_posts(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, PROPOSE)
        proposal = posted(h, room, "📅 M-1: Street party planning")
        assert "Say when you can" in h.transport.shown(proposal)

        await h.say(room, ANN, "!meet fix M-1 1")
        announcement = posted(h, room, "✅ M-1 is fixed")
        assert h.transport.shown(proposal).startswith(
            "✅ M-1 is fixed: Street party planning, Tue 8 Dec"
        )
        assert "Say when you can" not in h.transport.shown(proposal)
        assert "!rsvp M-1" in h.transport.shown(proposal)

        await h.say(room, ANN, "!meet move M-1 wed 9 dec 19:00")
        for post in (proposal, announcement):
            assert h.transport.shown(post).startswith(
                "✅ M-1 is fixed: Street party planning, Wed 9 Dec"
            )

        await h.say(room, ANN, "!meet cancel M-1")
        for post in (proposal, announcement):
            assert h.transport.shown(post).startswith("❌ M-1 is cancelled: Street party planning")
            assert "!rsvp" not in h.transport.shown(post)


async def test_a_cancelled_proposal_stops_asking_for_answers(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, PROPOSE)
        proposal = posted(h, room, "📅 M-1: Street party planning")
        await h.say(room, ANN, "!meet cancel M-1")
        assert h.transport.shown(proposal) == "❌ M-1 is cancelled: Street party planning."
