"""The bot's posts about an item stay true in the room, against a real Synapse (issue 22 §3):
an edited need's post shows the new text, a withdrawn need's post says so and stops inviting
help, a closed poll's announcement says it closed. What a resident's client shows is read the
way clients read it: the original event with Synapse's bundled latest ``m.replace``."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from tests.integration.conftest import encrypted_room, is_notice_from, room_with_bot


def edits(event_id: str, contains: str):
    """An edit of ``event_id`` whose new text contains ``contains``."""

    def check(event: dict[str, Any]) -> bool:
        content = event.get("content") or {}
        relation = content.get("m.relates_to") or {}
        return (
            relation.get("rel_type") == "m.replace"
            and relation.get("event_id") == event_id
            and contains in (content.get("m.new_content") or {}).get("body", "")
        )

    return check


async def shown(resident, room: str, event_id: str, timeout: float = 20) -> str:
    """The text a client shows for ``event_id``: the newest edit Synapse bundles with it (the
    server's own pick of the latest ``m.replace``), else the event's own body."""
    deadline = time.monotonic() + timeout
    while True:
        for event in await resident.messages(room, limit=100):
            if event.get("event_id") != event_id:
                continue
            replace = ((event.get("unsigned") or {}).get("m.relations") or {}).get("m.replace")
            if replace is None:
                return str(event["content"]["body"])
            return str(replace["content"]["m.new_content"]["body"])
        if time.monotonic() > deadline:
            raise TimeoutError(f"{event_id} is not among the room's latest events")
        await asyncio.sleep(0.2)


async def test_an_edited_then_withdrawn_need_edits_its_room_post(residents, shared_bot):
    mod, ann, bob = await residents("mod"), await residents("ann"), await residents("bob")
    bot = shared_bot
    room = await room_with_bot(mod, bot, ann, bob)

    bob.mark()
    await ann.send_text(room, "!need help moving a sofa | this week")
    post = await bob.wait_for(room, is_notice_from(bot.user_id, "Needed: help moving a sofa"))
    need = re.search(r"— (N-\d+)", post["content"]["body"])
    assert need is not None
    need_id, post_id = need[1], post["event_id"]
    assert f"!can {need_id}" in post["content"]["body"]

    # The edit: the room's post now says what the need says.
    bob.mark()
    await ann.send_text(room, f"!need {need_id} | help moving a wardrobe | today")
    await bob.wait_for(room, is_notice_from(bot.user_id, f"{need_id} is updated"))
    edit = await bob.wait_for(room, edits(post_id, "help moving a wardrobe"))
    assert edit["content"]["m.new_content"]["msgtype"] == "m.notice"
    assert edit["content"]["m.mentions"] == {}
    text = await shown(bob, room, post_id)
    assert text.startswith(f"Needed: help moving a wardrobe (today) — {need_id}")
    assert "sofa" not in text and f"!can {need_id}" in text

    # Withdrawn: the post says so and no longer asks anyone to help.
    bob.mark()
    await ann.send_text(room, f"!withdraw {need_id}")
    await bob.wait_for(room, is_notice_from(bot.user_id, f"{need_id} is withdrawn"))
    await bob.wait_for(room, edits(post_id, "Withdrawn"))
    text = await shown(bob, room, post_id)
    assert text.startswith(f"Needed: help moving a wardrobe (today) — {need_id}")
    assert "Withdrawn: this is no longer needed." in text
    assert "!can" not in text and "✋" not in text


async def test_a_closed_polls_announcement_says_it_closed(residents, shared_bot):
    mod, ann = await residents("mod"), await residents("ann")
    bot = shared_bot
    room = await room_with_bot(mod, bot, ann)

    ann.mark()
    await mod.send_text(room, "!poll Benches or planters for the green? | Benches | Planters")
    announced = await ann.wait_for(room, is_notice_from(bot.user_id, "Benches or planters"))
    found = re.match(r"📊 (P-\d+): ", announced["content"]["body"])
    assert found is not None
    poll_id, post_id = found[1], announced["event_id"]
    assert "Closes" in announced["content"]["body"]

    ann.mark()
    await mod.send_text(room, f"!poll close {poll_id}")
    await ann.wait_for(room, is_notice_from(bot.user_id, f"Results of {poll_id}"))
    await ann.wait_for(room, edits(post_id, "(closed)"))
    text = await shown(ann, room, post_id)
    assert text.startswith(f"📊 {poll_id} (closed): Benches or planters for the green?")
    assert "Voting closed on" in text and "Closes" not in text


async def test_a_cancelled_meetings_proposal_says_it_is_cancelled(residents, shared_bot):
    mod, ann = await residents("mod"), await residents("ann")
    bot = shared_bot
    room = await room_with_bot(mod, bot, ann)

    ann.mark()
    await mod.send_text(room, "!meet Allotment AGM | next tuesday 18:00 | next thursday 18:00")
    proposal = await ann.wait_for(room, is_notice_from(bot.user_id, "Allotment AGM"))
    found = re.match(r"📅 (M-\d+): ", proposal["content"]["body"])
    assert found is not None and "Say when you can" in proposal["content"]["body"]
    meeting_id, post_id = found[1], proposal["event_id"]

    ann.mark()
    await mod.send_text(room, f"!meet cancel {meeting_id}")
    await ann.wait_for(room, edits(post_id, "is cancelled"))
    text = await shown(ann, room, post_id)
    assert text == f"❌ {meeting_id} is cancelled: Allotment AGM."


async def test_in_an_encrypted_room_the_edit_is_encrypted_and_still_an_edit(
    encrypted_residents, shared_bot
):
    """The edit goes the way every send goes: encrypted, its relation in the clear beside the
    ciphertext (as the spec has it), so the homeserver bundles it with the post and clients
    show it in place."""
    ann, bob = await encrypted_residents("ann"), await encrypted_residents("bob")
    bot = shared_bot
    room = await encrypted_room(ann, bot, bob)

    ann.mark()
    await bob.send_text(room, "!need a lift to the clinic on monday")
    post = await ann.wait_for(room, is_notice_from(bot.user_id, "Needed: a lift to the clinic"))
    assert post["encrypted"]
    need = re.search(r"— (N-\d+)", post["content"]["body"])
    assert need is not None
    need_id, post_id = need[1], post["event_id"]

    ann.mark()
    await bob.send_text(room, f"!withdraw {need_id}")
    edit = await ann.wait_for(room, edits(post_id, "Withdrawn"))
    assert edit["encrypted"]
    assert "!can" not in edit["content"]["m.new_content"]["body"]
    stored = next(e for e in await ann.stored_events(room) if e["event_id"] == edit["event_id"])
    assert stored["type"] == "m.room.encrypted"
    assert stored["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": post_id}
    original = next(e for e in await ann.stored_events(room) if e["event_id"] == post_id)
    bundled = original["unsigned"]["m.relations"]["m.replace"]
    assert bundled["event_id"] == edit["event_id"]
