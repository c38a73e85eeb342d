"""A mutual aid command handled again after the bot stopped between its change and the rest
(its answer, the post's edit, the notes it owes): known by the change it made, finished, and
answered as the first run was, never refused as if someone else had made the change."""

from __future__ import annotations

from tests.unit.plugins.test_mutual_aid_plugin import ANN, BOB, CAT, ask, dm, harness


def dies_before_the_post_is_edited(h) -> None:
    """The next edit of a post fails as the process dying there would leave it: the change is
    made, the rest (the edit, the answer) is not."""
    handoff = h.bot.plugins["mutual_aid"].handoff
    real = handoff.show

    async def dying(*args, **kwargs):
        handoff.show = real
        raise RuntimeError("the process died here")

    handoff.show = dying


async def replay(h, event) -> str:
    """Handle ``event`` again as a restart does for one not marked handled; the bot's answer."""
    # Nothing was said by a process that died: the apology the test's failure left goes.
    for sent in [s for s in h.transport.sent if s.body.startswith("Sorry, something went")]:
        h.transport.sent.remove(sent)
        h.transport._by_txn.pop((sent.room_id, sent.txn_id), None)
    await h.db.execute("DELETE FROM core_handled WHERE event_id = ?", (event.event_id,))
    h.bot._recent.pop(event.event_id, None)
    await h.bot.handle_batch([event])
    return h.last_text(event.room_id)


async def test_a_replayed_withdraw_is_answered_as_the_first_was_and_the_post_says_so(tmp_path):
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await ask(h, room, ANN, "!need a lift to the clinic")
        dies_before_the_post_is_edited(h)
        event = await h.say(room, ANN, "!withdraw N-1")
        assert await replay(h, event) == "N-1 is withdrawn."
        post = next(s for s in h.transport.sent if s.room_id == room and "!can N-1" in s.body)
        edits = [
            s for s in h.transport.sent
            if (s.content.get("m.relates_to") or {}).get("event_id") == post.event_id
        ]  # fmt: skip
        assert edits and "!can" not in edits[-1].content["m.new_content"]["body"]


async def test_a_replayed_done_records_the_hours_once_and_answers_the_same(tmp_path):
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        await h.bot.room_settings.set(room, "mutual_aid", "timebank", True, ANN)
        ann_dm = await dm(h, ANN)
        await ask(h, room, ANN, "!need a lift to the clinic")
        await ask(h, room, BOB, "!can N-1")
        await ask(h, ann_dm, ANN, "!accept N-1")
        dies_before_the_post_is_edited(h)
        event = await h.say(ann_dm, ANN, "!done N-1 2h")
        again = await replay(h, event)
        assert again.startswith("N-1 is done") and "2h recorded" in again
        rows = await h.db.fetchval("SELECT count(*) FROM mutual_aid_hours")
        assert rows == 1


async def test_a_replayed_accept_makes_no_second_room_and_answers_the_same(tmp_path):
    async with harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB, CAT])
        ann_dm = await dm(h, ANN)
        await ask(h, room, ANN, "!need a lift to the clinic")
        await ask(h, room, BOB, "!can N-1")
        dies_before_the_post_is_edited(h)
        event = await h.say(ann_dm, ANN, "!accept N-1")
        again = await replay(h, event)
        assert again.startswith("Done: I've started a private chat"), again
        assert len(h.transport.created_rooms) == 1
