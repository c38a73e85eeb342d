"""The mutual_aid plugin driven through the real bot: fake homeserver, real database and
templates. Tried the way residents would: a private need by DM, a helper's ✋, the hand-off."""

from __future__ import annotations

import logging
from datetime import timedelta

from civicbot_plugins.mutual_aid.lifecycle import PAGE
from civicbot_plugins.mutual_aid.models import to_iso
from civicbot_plugins.mutual_aid.plugin import MutualAidPlugin

from civicbot.core.events import matrix_to
from civicbot.core.loader import discover
from civicbot.testing.harness import MODERATOR, BotHarness
from civicbot.transport import TransportError

ANN, BOB, CAT = "@ann:test", "@bob:test", "@cat:test"


def plugins():
    return {**discover(builtin_only=True), "mutual_aid": MutualAidPlugin}


def harness(tmp_path, **aid):
    return BotHarness.create(
        tmp_path,
        plugins(),
        plugins={"mutual_aid": aid} if aid else {},
    )


async def ask(h, room, who, text):
    await h.say(room, who, text)
    return h.last_text(room)


async def dm(h, who):
    return await h.transport.direct_room(who)


def everything_said(h, room):
    """Every body and formatted body the bot sent to ``room``, and the room's state."""
    sent = [s for s in h.transport.sent if s.room_id == room]
    return " ".join(str(s.content) for s in sent)


async def test_a_private_need_goes_by_dm_and_reaches_the_helper_without_the_name(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await ask(h, room, BOB, "!offer I have a van and can help move furniture | ongoing")
        ann_dm = await dm(h, ANN)
        asked = await ask(h, ann_dm, ANN, "!need help moving a sofa on saturday | this week")
        assert asked.startswith("Is this the room to post it in? Nothing is posted")
        assert not any("sofa" in text for text in h.texts(room))
        reply = await ask(h, ann_dm, ANN, asked.splitlines()[-1])  # the line to copy
        assert reply.startswith("N-1 is posted in the room, without your name")
        assert "O-1" in reply  # Bob's van is suggested to her
        post = h.texts(room)[-1]
        assert post.startswith("A neighbour needs: help moving a sofa on saturday (this week)")
        assert "N-1" in post and "!can N-1" in post
        # Bob opted in to hear about needs like his offer.
        assert "A neighbour needs something you offered (O-1)" in h.last_text(await dm(h, BOB))

        # Cat raises a hand on the post; Ann is asked privately.
        post_event = next(s for s in h.transport.sent if s.room_id == room and "N-1" in s.body)
        await h.send(
            room,
            CAT,
            "m.reaction",
            {
                "m.relates_to": {
                    "rel_type": "m.annotation",
                    "event_id": post_event.event_id,
                    "key": "✋",
                }
            },
        )
        assert "I've asked the person who needs N-1" in h.last_text(await dm(h, CAT))
        asked = h.last_text(ann_dm)
        assert asked.startswith(f"{CAT} offers to help with N-1") and "!accept N-1" in asked

        # Only Ann may accept; she does, and a room with exactly the two of them is made.
        assert "asked privately" in await ask(h, room, BOB, "!accept N-1")
        refused = await ask(h, await dm(h, BOB), BOB, "!accept N-1")
        assert "Only the person who asked for N-1 can accept" in refused
        assert "!can N-1" in refused
        done = await ask(h, ann_dm, ANN, "!accept N-1")
        assert "private chat" in done
        (intro_room, name, invited) = h.transport.created_rooms[-1]
        assert sorted(invited) == [ANN, CAT] and "N-1" in name
        members = await h.transport.joined_members(intro_room)
        assert sorted(members) == sorted([ANN, CAT, h.transport.user_id])
        intro = h.last_text(intro_room)
        assert CAT in intro and ANN in intro and "!done N-1" in intro

        # Nothing in the neighbourhood room, its lists or the logs names Ann.
        await ask(h, room, BOB, "!needs")
        await ask(h, room, BOB, "!find sofa")
        assert ANN not in everything_said(h, room)
        assert "ann" not in everything_said(h, room).lower()
        assert ANN not in caplog.text

        # Ann marks it done with a thank-you; the room thanks "the neighbour" (Cat).
        assert "N-1 is done" in await ask(h, ann_dm, ANN, "!done N-1 thanks")
        assert h.texts(room)[-1] == "Thank you to the neighbour who helped with N-1!"
        assert ANN not in everything_said(h, room)
        # The digest thanks them too, linking the de-identified post, nothing of Ann's DM.
        now = h.clock.now() + timedelta(minutes=1)
        section = await h.bot.plugins["mutual_aid"].digest_section(
            room, now - timedelta(days=7), now
        )
        link = matrix_to(room, post_event.event_id)
        assert f"Thank you to the neighbours who helped with:\n• N-1 {link}" in section.text
        assert f'helped with <a href="{link}">N-1</a>.</p>' in section.html
        assert ann_dm not in section.text + section.html and ANN not in section.html


async def test_bad_input_gets_a_reply_saying_what_to_type(tmp_path):
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        assert "There's no N-99" in await ask(h, room, BOB, "!can N-99")
        assert "is not a post id" in await ask(h, room, BOB, "!can banana")
        await ask(h, room, ANN, "!need a lift to the hospital on tuesday")
        own = await ask(h, room, ANN, "!can N-1")
        assert "your own need" in own and "!withdraw N-1" in own
        await ask(h, room, BOB, "!offer a ladder to lend")
        offer = await ask(h, room, ANN, "!can O-1")
        assert "offer, not a need" in offer and "!need" in offer
        assert "Only the person who asked" in await ask(h, room, BOB, "!accept N-1")
        long = await ask(h, room, ANN, "!need " + "x" * 10_000)
        assert "too long" in long and "sentence or two" in long
        ping = await ask(h, room, ANN, "!need help @room now")
        assert "can't ping the whole room" in ping and "Take out" in ping
        # A closed need: withdrawn, then someone offers help.
        assert "withdrawn" in await ask(h, room, ANN, "!withdraw N-1")
        closed = await ask(h, room, BOB, "!can N-1")
        assert "N-1 was withdrawn, so it can't be helped with now" in closed


async def test_expired_posts_remind_then_expire_and_can_be_renewed(tmp_path):
    async with harness(tmp_path, expiry_days=3) as h:
        room = h.room(members=[ANN, BOB])
        await ask(h, room, ANN, "!need someone to walk my dog")
        await h.advance(timedelta(days=1, hours=1))
        assert "expires on" in h.last_text(await dm(h, ANN))
        await h.advance(timedelta(days=2))
        assert "has expired" in h.last_text(await dm(h, ANN))
        late = await ask(h, room, BOB, "!can N-1")
        assert "has expired" in late and "!renew N-1" in late
        assert "stays up until" in await ask(h, room, ANN, "!renew N-1")
        assert "I've asked the person" in await ask(h, room, BOB, "!can N-1")


async def test_a_helper_backing_out_or_being_forgotten_reopens_the_need(tmp_path):
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await ask(h, room, ANN, "!need help with my laptop")
        await ask(h, room, BOB, "!can N-1")
        await ask(h, room, ANN, "!accept N-1")
        busy = await ask(h, room, CAT, "!can N-1")
        assert "already helping" in busy
        assert "no longer down to help" in await ask(h, room, BOB, "!withdraw N-1")
        assert "open again" in h.last_text(await dm(h, ANN))
        await ask(h, room, CAT, "!can N-1")
        await ask(h, room, ANN, "!accept N-1")
        await ask(h, room, CAT, "!forget me")
        await ask(h, room, CAT, "!forget me confirm")
        needs = await ask(h, room, BOB, "!needs")
        assert "N-1" in needs  # open again, not matched to nobody


async def test_reports_reach_moderators_who_can_remove(tmp_path):
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await ask(h, room, ANN, "!offer cheap watches, DM me")
        empty = await ask(h, room, BOB, "!report O-1")
        assert "Say what is wrong" in empty
        assert "moderators have been told" in await ask(h, room, BOB, "!report O-1 spam")
        assert "O-1 was reported: “spam”" in h.last_text(await dm(h, MODERATOR))
        assert "removed" in await ask(h, room, MODERATOR, "!withdraw O-1")
        assert "took down your post O-1" in h.last_text(await dm(h, ANN))
        assert "No open offers" in await ask(h, room, BOB, "!offers")


async def test_a_need_by_dm_asks_which_room_when_there_are_several(tmp_path):
    async with harness(tmp_path) as h:
        elm, oak = h.room(members=[ANN, BOB]), h.room(members=[ANN, CAT])
        ann_dm = await dm(h, ANN)
        # Issue 19 §2: the rooms come from the bot's room state, so nobody has to show
        # themselves in the room (`!needs`) before their anonymous need can go there.
        question = await ask(h, ann_dm, ANN, "!need a lift to the station")
        assert not any("N-1" in text for text in h.texts(elm) + h.texts(oak))
        assert question.startswith("Which room should I post it in?")
        assert f"1. {elm}" in question and f"2. {oak}" in question and "| room: 1" in question
        posted = await ask(h, ann_dm, ANN, "!need a lift to the station | room: 2")
        assert posted.startswith("N-1 is posted in the room, without your name")
        assert "A neighbour needs: a lift to the station" in h.last_text(oak)
        assert not any("N-1" in text for text in h.texts(elm))
        offer = await ask(h, ann_dm, ANN, "!offer my old bike")
        assert "Offers are posted in the room" in offer


async def test_in_the_room_the_requester_gets_the_answer_anyone_would(tmp_path):
    """Typed in the room about a private need, a command must not tell onlookers whose it is:
    the requester and a stranger get word-for-word the same reply, and nothing happens."""
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await ask(h, room, BOB, "!needs")
        await ask(h, await dm(h, ANN), ANN, "!need someone to fix my bike puncture | room: 1")
        for command in ("!accept N-1", "!decline N-1", "!done N-1", "!renew N-1", "!withdraw N-1"):
            hers, his = await ask(h, room, ANN, command), await ask(h, room, CAT, command)
            assert hers == his and "asked privately" in hers, command
        assert await ask(h, room, ANN, "!can N-1") == await ask(h, room, CAT, "!can N-1")
        assert any("your own need" in t for t in h.texts(await dm(h, ANN)))
        assert "N-1" in await ask(h, room, BOB, "!needs")  # still open: nothing was done
        assert "asked privately" not in await ask(h, await dm(h, ANN), ANN, "!renew N-1")


async def test_digest_export_and_personal_digest_show_only_what_each_may_see(tmp_path):
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await ask(h, room, BOB, "!offer a spare pram to give away | one-off")
        await ask(h, room, BOB, "!needs")
        await ask(h, await dm(h, ANN), ANN, "!need a buggy for my grandson | room: 1")
        await ask(h, room, CAT, "!need help with a council tax form")
        await ask(h, room, BOB, "!can N-1")
        await h.advance(timedelta(days=3))
        plugin = h.bot.plugins["mutual_aid"]
        since, until = h.clock.now() - timedelta(days=7), h.clock.now()
        section = await plugin.digest_section(room, since, until)
        assert "New offers:" in section.text and "O-1" in section.text
        assert "N-1 — a buggy for my grandson (waiting 3 days)" in section.text
        assert "N-2" in section.text and ANN not in section.text and CAT not in section.text
        # Each post links to the bot's announcement in the room; Ann's private need to the
        # de-identified one, never to anything in her DM.
        announced = ("Offered:", "Needed:", "A neighbour needs:")
        posted = {s.body.split(" — ")[-1].split()[0]: s for s in h.transport.sent
                  if s.room_id == room and s.body.startswith(announced)}  # fmt: skip
        offer, private_need = (matrix_to(room, posted[i].event_id) for i in ("O-1", "N-1"))
        assert posted["N-1"].body.startswith("A neighbour needs")
        assert f"(up 3 days) {offer}\n" in section.text
        assert f"N-1 — a buggy for my grandson (waiting 3 days) {private_need}\n" in section.text
        assert f'<li><a href="{offer}">O-1</a> · lending · one-off — a spare pram' in section.html
        assert f'<li><a href="{private_need}">N-1</a> — a buggy for my grandson' in section.html
        direct = await dm(h, ANN)
        assert direct not in section.text and direct not in section.html and ANN not in section.html
        mine = await plugin.personal_digest_section(BOB, since, until)
        assert "N-1" in mine.text and "[offered]" in mine.text
        assert await plugin.personal_digest_section(CAT, since, until) is None
        ann_data = await plugin.export_user_data(ANN)
        assert [p["id"] for p in ann_data["posts"]] == ["N-1"] and ann_data["posts"][0]["private"]
        assert [p["id"] for p in (await plugin.export_user_data(CAT))["posts"]] == ["N-2"]


async def test_accepting_again_makes_the_room_if_the_homeserver_refused_it(tmp_path):
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await ask(h, room, ANN, "!need help with my boiler")
        await ask(h, room, BOB, "!can N-1")
        made = h.transport.create_private_room

        async def refuse(name, invite):
            raise TransportError("no rooms today")

        h.transport.create_private_room = refuse
        await h.say(room, ANN, "!accept N-1")  # accepted, but no room could be made
        assert h.transport.created_rooms == []
        h.transport.create_private_room = made
        assert "private chat" in await ask(h, room, ANN, "!accept N-1")
        (intro, _, invited) = h.transport.created_rooms[-1]
        assert sorted(invited) == [ANN, BOB] and "N-1" in h.last_text(intro)
        assert "already accepted" in await ask(h, room, ANN, "!accept N-1")


async def test_reactions_and_joins_that_are_not_for_mutual_aid_leave_no_handled_row(tmp_path):
    """A 👍 on any message, or a member leaving, is not mutual aid's: its hooks say so
    (``False``), so the core records nothing for them. A ✋ on a need is acted on, and recorded."""
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        said = await h.say(room, BOB, "hello all")
        thumbs = await h.send(
            room,
            CAT,
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": said.event_id, "key": "👍"}},
        )
        left = await h.send(room, CAT, "m.room.member", {"membership": "leave"}, state_key=CAT)
        handled = {r[0] for r in await h.db.fetchall("SELECT event_id FROM core_handled")}
        assert thumbs.event_id not in handled and left.event_id not in handled

        await ask(h, room, ANN, "!need a lift to the clinic on monday | this week")
        post = next(s for s in h.transport.sent if s.room_id == room and "N-1" in s.body)
        hand = await h.send(
            room,
            BOB,
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": post.event_id, "key": "✋"}},
        )
        handled = {r[0] for r in await h.db.fetchall("SELECT event_id FROM core_handled")}
        assert hand.event_id in handled


async def test_one_expiry_run_clears_everything_that_fell_due_however_much(tmp_path):
    """More posts fell due while the bot was down than one page of the job holds: a single run
    expires them all, and a post it has to leave open does not stop it."""
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN])
        await ask(h, room, ANN, "!offer lifts to the shops")  # O-1, a real post
        now = h.clock.now()
        due = to_iso(now - timedelta(days=1))
        rows = [
            ("offer", n, room, f"bulk{n}", "", f"offer {n}", "offer", "", "anytime", 2,
             to_iso(now - timedelta(days=20)), to_iso(now - timedelta(days=20)), due)
            for n in range(2, 2 + 3 * PAGE)
        ]  # fmt: skip
        await h.db.executemany(
            "INSERT INTO mutual_aid_posts (kind, number, room_id, source_key, poster, body,"
            " terms, category, urgency, urgency_rank, created_at, updated_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        await h.advance(timedelta(minutes=16))  # one run of the expiry job
        left = await h.db.fetchval(
            "SELECT count(*) FROM mutual_aid_posts WHERE state = 'open' AND expires_at <= ?",
            (to_iso(h.clock.now()),),
        )
        assert left == 0
