"""Testing a plugin with the fast harness: the real bot, database and templates, a fake
transport and a clock the test winds forward. (A test against a real Synapse is in civicbot's
own tests/integration/test_example_plugin.py.)"""

from __future__ import annotations

from datetime import timedelta

from civicbot_reminders.plugin import RemindersPlugin

from civicbot.testing.harness import MODERATOR, BotHarness, builtin_plugins

ANN, BOB = "@ann:test", "@bob:test"


def plugins():
    """The built-ins plus this plugin: the harness loads only what a test names."""
    return {**builtin_plugins(), "reminders": RemindersPlugin}


async def ask(h: BotHarness, room: str, who: str, text: str) -> str:
    h.clock.advance(timedelta(seconds=10))  # people pause between messages
    await h.say(room, who, text)
    return h.last_text(room)


async def test_a_reminder_is_echoed_then_posted_when_due(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        reply = await ask(h, room, ANN, "!remind in 2 hours | Tea urn off")
        assert reply == "R-1: I'll remind this room on Mon 23 Nov 11:00 Europe/London: Tea urn off"
        await h.advance(timedelta(hours=1))
        assert "⏰ R-1: Tea urn off" not in h.texts(room)
        await h.advance(timedelta(hours=1))
        assert h.last_text(room) == "⏰ R-1: Tea urn off"
        # In the room's timeline (not hidden in a thread), replying to the !remind message.
        in_room = [sent for sent in h.transport.sent if sent.room_id == room]
        relation = in_room[-1].content["m.relates_to"]
        assert "rel_type" not in relation
        assert (
            relation["m.in_reply_to"]["event_id"]
            == in_room[-2].content["m.relates_to"]["m.in_reply_to"]["event_id"]
        )
        # A silent notice there; Ann asked for it, so a direct message notifies her.
        assert in_room[-1].content["msgtype"] == "m.notice"
        told = h.transport.sent[-1]
        assert told.room_id == await h.transport.direct_room(ANN)
        assert told.content["msgtype"] == "m.text"
        assert told.content["m.mentions"] == {"user_ids": [ANN]}
        assert told.body.startswith("⏰ R-1: Tea urn off")


async def test_two_reminders_with_the_same_text_both_arrive(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await ask(h, room, ANN, "!remind in 1 hour | Bins out")
        await ask(h, room, ANN, "!remind in 2 hours | Bins out")
        await h.advance(timedelta(hours=3))
        assert [t for t in h.texts(room) if t.startswith("⏰")] == [
            "⏰ R-1: Bins out",
            "⏰ R-2: Bins out",
        ]


async def test_a_restart_re_arms_and_downtime_is_made_up_once(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await ask(h, room, ANN, "!remind in 1 hour | Before the restart")
        await ask(h, room, ANN, "!remind in 3 hours | After the restart")
        h = await h.restart()
        h.clock.advance(timedelta(hours=2))  # down while R-1 came due
        await h.say(room, BOB, "hello")  # the first sync after the start: caught up
        await h.advance(timedelta(0))  # jobs due now run (at once, outside the harness)
        assert h.last_text(room).startswith("⏰ R-1: Before the restart")
        assert "offline when it was due" in h.last_text(room)
        await h.advance(timedelta(hours=1))
        assert h.last_text(room) == "⏰ R-2: After the restart"
        h = await h.restart()
        await h.say(room, BOB, "hello again")
        await h.advance(timedelta(days=1))
        assert len([t for t in h.texts(room) if t.startswith("⏰")]) == 2
        await h.close()


async def test_cancel_lists_and_bad_input(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room, other = h.room(), h.room()
        await ask(h, room, ANN, "!remind friday 18:00 | Litter pick kit")
        assert "R-1  Fri 27 Nov 18:00 Europe/London  Litter pick kit" in await ask(
            h, room, BOB, "!reminders"
        )
        assert "Only whoever set R-1" in await ask(h, room, BOB, "!remind cancel R-1")
        assert "There's no reminder R-1 here" in await ask(h, other, ANN, "!remind cancel R-1")
        assert await ask(h, room, MODERATOR, "!remind cancel R-1") == "Cancelled R-1."
        await h.advance(timedelta(days=7))
        assert not [t for t in h.texts(room) if t.startswith("⏰")]
        assert "Tell me when and what" in await ask(h, room, ANN, "!remind tomorrow")
        assert "yesterday" in (await ask(h, room, ANN, "!remind yesterday | too late")).lower()
        assert "Usage: !remind cancel <R-number>" in await ask(h, room, ANN, "!remind cancel x")


async def test_a_cancelled_reminders_echo_is_edited_to_say_so(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await ask(h, room, ANN, "!remind friday 18:00 | Litter pick kit")
        echo = h.transport.sent[-1]
        assert echo.body.startswith("R-1: I'll remind this room on Fri 27 Nov 18:00")
        assert await ask(h, room, ANN, "!remind cancel R-1") == "Cancelled R-1."
        [edit] = [
            s.content
            for s in h.transport.sent
            if (s.content.get("m.relates_to") or {}).get("event_id") == echo.event_id
        ]
        assert edit["m.relates_to"]["rel_type"] == "m.replace"
        assert edit["m.new_content"]["body"] == "R-1 (cancelled): Litter pick kit"


async def test_rooms_set_their_own_limit(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        assert "Done" in await ask(h, room, MODERATOR, "!config reminders.max_waiting 1")
        await ask(h, room, ANN, "!remind in 1 day | one")
        assert "already has 1 reminders waiting" in await ask(
            h, room, ANN, "!remind in 2 days | two"
        )


async def test_export_and_forget(tmp_path):
    async with BotHarness.create(tmp_path, plugins()) as h:
        room = h.room()
        await ask(h, room, ANN, "!remind in 1 day | Ann's reminder")
        plugin = h.bot.plugins["reminders"]
        exported = await plugin.export_user_data(ANN)
        assert exported["reminders_you_set"][0]["text"] == "Ann's reminder"
        report = await plugin.forget_user(ANN)
        assert report.removed == 1
        assert await plugin.export_user_data(ANN) is None
