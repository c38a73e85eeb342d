"""A failing event hook is logged, never answered: nobody asked the bot anything."""

from __future__ import annotations

from civicbot.core.commands import command
from civicbot.core.context import Context
from civicbot.core.events import EventKind
from civicbot.core.plugin import Plugin, on
from civicbot.testing.harness import BotHarness


class FragilePlugin(Plugin):
    name = "fragile"

    @on(EventKind.REACTION, EventKind.MESSAGE)
    async def on_anything(self, ctx: Context) -> None:
        raise TypeError("unhashable type: 'list'")

    @command("fragile")
    async def fragile(self, ctx: Context) -> None:
        """Fail on purpose."""
        raise RuntimeError("on purpose")


async def test_a_failing_hook_posts_no_apology_but_a_failing_command_does(tmp_path, caplog):
    async with BotHarness.create(tmp_path, {"fragile": FragilePlugin}) as h:
        room = h.room(members=["@eve:test"])
        await h.send(
            room,
            "@eve:test",
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}},
        )
        await h.say(room, "@eve:test", "just chatting")
        assert h.transport.texts() == []
        assert "unhashable type" in caplog.text
        await h.say(room, "@eve:test", "!fragile")
        assert h.transport.texts() and "Sorry" in h.transport.texts()[-1]
