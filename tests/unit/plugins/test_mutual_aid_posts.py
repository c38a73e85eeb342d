"""A need's or an offer's post in the room is edited whenever the post changes (issue 22 §3):
it shows the edited text, and once nobody can help (taken, done, withdrawn, removed, expired)
it stops inviting `!can` and ✋; open again, it invites again."""

from __future__ import annotations

from datetime import timedelta

from civicbot_plugins.mutual_aid.plugin import MutualAidPlugin

from civicbot.core.loader import discover
from civicbot.testing.harness import MODERATOR, BotHarness

ANN, BOB, CAT = "@ann:test", "@bob:test", "@cat:test"


def plugins():
    return {**discover(builtin_only=True), "mutual_aid": MutualAidPlugin}


def post_of(h: BotHarness, room: str, short_id: str) -> str:
    """The event id of the room's post announcing ``short_id``."""
    return next(
        s.event_id
        for s in h.transport.sent
        if s.room_id == room and f"— {short_id}\n" in s.body and "m.relates_to" not in s.content
    )


async def test_an_edited_need_edits_its_post(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!need help moving a sofa | this week")
        post = post_of(h, room, "N-1")
        await h.say(room, ANN, "!need N-1 | help moving a wardrobe | today")
        assert h.last_text(room).startswith("N-1 is updated")
        now = h.transport.shown(post)
        assert now.startswith("Needed: help moving a wardrobe (today) — N-1")
        assert "!can N-1" in now


async def test_a_withdrawn_need_stops_inviting_help(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!need a lift to the clinic")
        post = post_of(h, room, "N-1")
        await h.say(room, ANN, "!withdraw N-1")
        now = h.transport.shown(post)
        assert now.startswith("Needed: a lift to the clinic — N-1")
        assert "Withdrawn" in now
        assert "!can" not in now and "✋" not in now


async def test_a_taken_need_then_reopened_then_done(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!need someone to water plants")
        post = post_of(h, room, "N-1")
        await h.say(room, BOB, "!can N-1")
        assert "!can N-1" in h.transport.shown(post)  # offered, not yet accepted: others may still
        await h.say(room, ANN, "!accept N-1")
        assert "helping with this now" in h.transport.shown(post)
        assert "!can" not in h.transport.shown(post)
        await h.say(room, BOB, "!withdraw N-1")  # Bob backs out: it is open again
        assert "!can N-1" in h.transport.shown(post)
        await h.say(room, CAT, "!can N-1")
        await h.say(room, ANN, "!accept N-1")
        await h.say(room, ANN, "!done N-1")
        assert "Done" in h.transport.shown(post) and "!can" not in h.transport.shown(post)


async def test_a_removed_private_need_loses_its_text(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room(members=[ANN, BOB])
        ann_dm = await h.transport.direct_room(ANN)
        await h.say(ann_dm, ANN, "!need someone to talk to | room: 1")
        post = post_of(h, room, "N-1")
        assert h.transport.shown(post).startswith("A neighbour needs: someone to talk to")
        await h.say(room, MODERATOR, "!withdraw N-1")
        assert h.transport.shown(post) == "N-1 was removed by the room's moderators."


async def test_an_expired_offer_says_so_and_a_renewed_one_is_offered_again(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, BOB, "!offer a ladder to lend | expires in 2 days")
        post = post_of(h, room, "O-1")
        await h.bot.handle_batch([])  # caught up: the expiry job runs
        await h.advance(timedelta(days=3))
        assert h.transport.shown(post).startswith("Offered: a ladder to lend")
        assert "Expired" in h.transport.shown(post)
        await h.say(room, BOB, "!renew O-1")
        assert "Need it?" in h.transport.shown(post)


async def test_forgetting_a_person_takes_their_posts_down_and_reopens_what_they_helped(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.say(room, ANN, "!need help with my laptop")
        need = post_of(h, room, "N-1")
        await h.say(room, CAT, "!offer dog walking on weekdays")
        offer = post_of(h, room, "O-1")
        await h.say(room, CAT, "!can N-1")
        await h.say(room, ANN, "!accept N-1")
        assert "!can" not in h.transport.shown(need)
        await h.say(room, CAT, "!forget me")
        await h.say(room, CAT, "!forget me confirm")
        assert "!can N-1" in h.transport.shown(need)  # open again: her helper is gone
        assert h.transport.shown(offer) == "O-1 was taken down by whoever posted it."


async def test_a_forgotten_requesters_private_need_is_not_edited_at_that_moment(tmp_path):
    """Editing it just as someone asked (perhaps in the room) to be forgotten would tell the
    room whose need it was."""
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(await h.transport.direct_room(ANN), ANN, "!need someone to talk to | room: 1")
        post = post_of(h, room, "N-1")
        before = h.transport.shown(post)
        await h.say(room, ANN, "!forget me")
        await h.say(room, ANN, "!forget me confirm")
        assert h.transport.shown(post) == before
