"""The engine keeps the bot's posts about an item true (civicbot.core.posts, issue 22 §3): a
post sent with ``item=`` is recorded, and ``refresh(item, …)`` edits every one of them in place
(``m.replace``), with the mention limits, the same transaction ids on a replay, and nothing
about who caused it stored."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from civicbot.api import Context, JobContext, Plugin, PluginConfig, Rest, command
from civicbot.testing.harness import BotHarness

ANN = "@ann:test"
Ctx = Context[PluginConfig]


class Notes(Plugin[PluginConfig]):
    """Notes in the room: ``!note text`` posts K-1, ``!renote K-1 text`` changes it."""

    name = "notes"

    async def setup(self) -> None:
        self.count = 0

    @command("note")
    async def note(self, ctx: Ctx, text: Rest) -> None:
        """Post a note."""
        self.count += 1
        await ctx.reply(f"Note K-{self.count}: {text}", item=f"K-{self.count}")

    @command("renote")
    async def renote(self, ctx: Ctx, item: str, text: Rest) -> None:
        """Change a note."""
        edited = await ctx.refresh(item, f"Note {item}: {text}")
        await ctx.reply(f"{item} is updated ({edited} post).")

    def later(self, room: str, item: str, text: str, after: timedelta) -> None:
        async def job(job: JobContext[PluginConfig]) -> None:
            await job.refresh(item, text)

        self.ctx.jobs.at(f"later:{item}", self.ctx.clock.now() + after, job)


def edits(h: BotHarness, event_id: str) -> list[dict[str, Any]]:
    """The replacements the bot sent of ``event_id``, oldest first."""
    return [
        s.content
        for s in h.transport.sent
        if (s.content.get("m.relates_to") or {}).get("event_id") == event_id
        and s.content["m.relates_to"].get("rel_type") == "m.replace"
    ]


def first_post(h: BotHarness, room: str, text: str) -> str:
    return next(s.event_id for s in h.transport.sent if s.room_id == room and s.body == text)


async def test_a_changed_item_edits_its_post_in_place(tmp_path):
    async with BotHarness.create(tmp_path, {"notes": Notes}) as h:
        room = h.room()
        await h.say(room, ANN, "!note Bins go out on Tuesday")
        await h.say(room, ANN, "!note Library closed")
        post = first_post(h, room, "Note K-1: Bins go out on Tuesday")
        await h.say(room, ANN, "!renote K-1 Bins go out on Wednesday")
        assert h.last_text(room) == "K-1 is updated (1 post)."
        [edit] = edits(h, post)
        assert edit["m.new_content"]["body"] == "Note K-1: Bins go out on Wednesday"
        assert edit["m.new_content"]["msgtype"] == "m.notice"
        assert edit["body"] == "* Note K-1: Bins go out on Wednesday"
        assert edit["m.mentions"] == {} and edit["m.new_content"]["m.mentions"] == {}
        # Only K-1's post: K-2 is another item.
        assert edits(h, first_post(h, room, "Note K-2: Library closed")) == []
        # A later change edits the original post again (never an edit of an edit).
        await h.say(room, ANN, "!renote K-1 Bins are cancelled this week")
        assert [e["m.new_content"]["body"] for e in edits(h, post)][-1] == (
            "Note K-1: Bins are cancelled this week"
        )


async def test_an_edit_never_pings_the_room(tmp_path):
    async with BotHarness.create(tmp_path, {"notes": Notes}) as h:
        room = h.room()
        await h.say(room, ANN, "!note Quiet")
        await h.say(room, ANN, "!renote K-1 @room wake up")
        [edit] = edits(h, first_post(h, room, "Note K-1: Quiet"))
        assert "@room" not in edit["m.new_content"]["body"]
        assert "@room" not in edit["body"]
        assert not edit["m.mentions"].get("room")


async def test_a_replayed_change_repeats_its_transaction_ids(tmp_path):
    async with BotHarness.create(tmp_path, {"notes": Notes}) as h:
        room = h.room()
        await h.say(room, ANN, "!note Once")
        post = first_post(h, room, "Note K-1: Once")
        change = await h.say(room, ANN, "!renote K-1 Twice")
        # The crash came after the edit and before the event was recorded as handled.
        await h.db.execute("DELETE FROM core_handled WHERE event_id = ?", (change.event_id,))
        fresh = await h.restart()
        await fresh.bot.handle_batch([change])
        assert fresh.last_text(room) == "K-1 is updated (1 post)."
        assert len(edits(fresh, post)) == 1  # the homeserver (here: the fake) kept the first
        await fresh.bot.stop()


async def test_a_job_refreshes_the_posts_of_every_room(tmp_path):
    async with BotHarness.create(tmp_path, {"notes": Notes}) as h:
        east, west = h.room(), h.room()
        await h.say(east, ANN, "!note Street party")
        plugin = h.bot.plugins["notes"]
        assert isinstance(plugin, Notes)
        # The same item posted in a second room (say, after a room upgrade).
        west_post = await plugin.ctx.send(west, "Note K-1: Street party", key="w", item="K-1")
        plugin.later(east, "K-1", "Note K-1: Street party (postponed)", timedelta(hours=1))
        await h.advance(timedelta(hours=2))
        for post in (first_post(h, east, "Note K-1: Street party"), west_post):
            [edit] = edits(h, post)
            assert edit["m.new_content"]["body"] == "Note K-1: Street party (postponed)"


async def test_what_is_stored_names_the_item_never_a_person(tmp_path):
    async with BotHarness.create(tmp_path, {"notes": Notes}) as h:
        room = h.room()
        await h.say(room, ANN, "!note Mine")
        rows = await h.db.fetchall("SELECT * FROM core_item_posts")
        assert len(rows) == 1
        assert not any(ANN in str(value) for value in rows[0])
        plugin = h.bot.plugins["notes"]
        await plugin.ctx.posts.forget("K-1")
        assert await plugin.ctx.refresh("K-1", "gone", key="gone") == 0


async def test_a_post_that_cannot_be_edited_is_skipped_and_the_rest_are_edited(tmp_path):
    async with BotHarness.create(tmp_path, {"notes": Notes}) as h:
        east, west = h.room(), h.room()
        plugin = h.bot.plugins["notes"]
        assert isinstance(plugin, Notes)
        first = await plugin.ctx.send(east, "Note K-9: Fete", key="e", item="K-9")
        second = await plugin.ctx.send(west, "Note K-9: Fete", key="w", item="K-9")
        h.transport.fail_sends = 1  # the homeserver refuses the first edit
        assert await plugin.ctx.refresh("K-9", "Note K-9: Fete (rain date)", key="rain") == 1
        assert edits(h, first) == []
        [edit] = edits(h, second)
        assert edit["m.new_content"]["body"] == "Note K-9: Fete (rain date)"


async def test_an_edit_the_homeserver_could_not_take_is_made_once_it_can(tmp_path):
    async with BotHarness.create(tmp_path, {"notes": Notes}) as h:
        room = h.room()
        plugin = h.bot.plugins["notes"]
        assert isinstance(plugin, Notes)
        await h.say(room, ANN, "hello")  # the bot has started and caught up
        post = await plugin.ctx.send(room, "Note K-7: Fete", key="k7", item="K-7")
        h.transport.fail_sends = 1  # away for a moment (not a refusal)
        assert await plugin.ctx.refresh("K-7", "Note K-7: Fete (rain date)", key="rain") == 0
        assert edits(h, post) == []
        await h.advance(timedelta(minutes=2))  # the engine keeps what was left to it
        [edit] = edits(h, post)
        assert edit["m.new_content"]["body"] == "Note K-7: Fete (rain date)"
        await h.advance(timedelta(minutes=2))
        assert len(edits(h, post)) == 1  # once


async def test_an_edit_left_for_later_never_lands_after_a_newer_one(tmp_path):
    async with BotHarness.create(tmp_path, {"notes": Notes}) as h:
        room = h.room()
        plugin = h.bot.plugins["notes"]
        assert isinstance(plugin, Notes)
        await h.say(room, ANN, "hello")  # the bot has started and caught up
        post = await plugin.ctx.send(room, "Note K-8: Fete", key="k8", item="K-8")
        h.transport.fail_sends = 2  # both edits wait for the homeserver
        await plugin.ctx.refresh("K-8", "Note K-8: Fete (rain date)", key="rain")
        await plugin.ctx.refresh("K-8", "Note K-8: Fete (cancelled)", key="off")
        await h.advance(timedelta(minutes=2))
        bodies = [e["m.new_content"]["body"] for e in edits(h, post)]
        assert bodies == ["Note K-8: Fete (cancelled)"]  # the older one never lands
        h.transport.fail_sends = 1
        await plugin.ctx.refresh("K-8", "Note K-8: Fete (back on)", key="on")
        await plugin.ctx.refresh("K-8", "Note K-8: Fete (back on, 3pm)", key="on3")
        await h.advance(timedelta(minutes=2))
        bodies = [e["m.new_content"]["body"] for e in edits(h, post)]
        assert bodies[-1] == "Note K-8: Fete (back on, 3pm)"  # sent now, the older dropped
        assert "Note K-8: Fete (back on)" not in bodies
