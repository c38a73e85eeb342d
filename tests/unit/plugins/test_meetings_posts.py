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


def shown(h: BotHarness, event_id: str) -> str:
    """What clients show for the bot's message ``event_id``: its latest edit, else itself."""
    text = next(s.body for s in h.transport.sent if s.event_id == event_id)
    for s in h.transport.sent:
        relation = s.content.get("m.relates_to") or {}
        if relation.get("rel_type") == "m.replace" and relation.get("event_id") == event_id:
            text = s.content["m.new_content"]["body"]
    return text


async def test_fixed_moved_then_cancelled_meeting_edits_its_posts(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, PROPOSE)
        proposal = posted(h, room, "📅 M-1: Street party planning")
        assert "Say when you can" in shown(h, proposal)

        await h.say(room, ANN, "!meet fix M-1 1")
        announcement = posted(h, room, "✅ M-1 is fixed")
        assert shown(h, proposal).startswith("✅ M-1 is fixed: Street party planning, Tue 8 Dec")
        assert "Say when you can" not in shown(h, proposal)
        assert "!rsvp M-1" in shown(h, proposal)

        await h.say(room, ANN, "!meet move M-1 wed 9 dec 19:00")
        for post in (proposal, announcement):
            assert shown(h, post).startswith("✅ M-1 is fixed: Street party planning, Wed 9 Dec")

        await h.say(room, ANN, "!meet cancel M-1")
        for post in (proposal, announcement):
            assert shown(h, post).startswith("❌ M-1 is cancelled: Street party planning")
            assert "!rsvp" not in shown(h, post)


async def test_a_cancelled_proposal_stops_asking_for_answers(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, PROPOSE)
        proposal = posted(h, room, "📅 M-1: Street party planning")
        await h.say(room, ANN, "!meet cancel M-1")
        assert shown(h, proposal) == "❌ M-1 is cancelled: Street party planning."
