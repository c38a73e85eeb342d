"""A closed poll's announcement stops asking for votes (issue 22 §3): the engine edits it in
place when the poll closes, by a moderator or at its deadline, once."""

from __future__ import annotations

from datetime import timedelta

from civicbot.testing.harness import MODERATOR
from tests.unit.plugins.polls_support import ANN, BOB, polls_harness


def announcement(h, room: str) -> str:
    return next(
        s.event_id for s in h.transport.sent if s.room_id == room and s.body.startswith("📊 P-1:")
    )


def edits_of(h, event_id: str) -> list[dict]:
    return [
        s.content["m.new_content"]
        for s in h.transport.sent
        if (s.content.get("m.relates_to") or {}).get("event_id") == event_id
        and s.content["m.relates_to"].get("rel_type") == "m.replace"
    ]


async def test_a_poll_closed_by_a_moderator_edits_its_announcement(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Which day for the litter pick? | Saturday | Sunday")
        post = announcement(h, room)
        assert edits_of(h, post) == []
        await h.say(room, MODERATOR, "!poll close P-1")
        [closed] = edits_of(h, post)
        assert closed["body"].startswith("📊 P-1 (closed): Which day for the litter pick?")
        assert "Voting closed on" in closed["body"]
        assert "Closes" not in closed["body"] and "!vote" not in closed["body"]
        assert "(closed)" in closed["formatted_body"]
        # The results follow, replying to the announcement that now says where they are.
        assert h.last_text(room).startswith("📊 Results of P-1: Which day for the litter pick?")


async def test_a_poll_closed_at_its_deadline_edits_its_announcement_once(tmp_path):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Benches or planters? | Benches | Planters | closes in 2 days")
        post = announcement(h, room)
        await h.bot.handle_batch([])  # caught up
        await h.advance(timedelta(days=3))
        [closed] = edits_of(h, post)
        assert closed["body"].startswith("📊 P-1 (closed): Benches or planters?")
