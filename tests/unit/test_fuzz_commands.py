"""Fuzzing the command parser: no input crashes it, and none crashes the bot behind it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicbot.core.commands import (
    CommandIndex,
    ItemId,
    Lines,
    Rest,
    UsageError,
    UserId,
    command,
    tokenize,
)
from civicbot.core.plugin import Plugin
from civicbot.testing.harness import MODERATOR, BotHarness
from tests.unit.plugins.test_admin import plugin_classes

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
APOLOGY = "Sorry, something went wrong"
PollId = Annotated[int, ItemId("P")]


class Everything(Plugin):
    """Every kind of parameter the parser knows."""

    name = "everything"

    @command("kinds")
    async def kinds(
        self, ctx, who: UserId, n: int, x: float, flag: bool, poll: PollId, rest: Rest | None = None
    ) -> None:
        """All the converters."""

    @command("kinds lines", parent=kinds)
    async def lines(self, ctx, first: str, parts: Lines) -> None:
        """Lines."""

    @command("kinds many", parent=kinds)
    async def many(self, ctx, *words: str) -> None:
        """Variadic."""

    @command("kinds optional", parent=kinds)
    async def optional(self, ctx, a: int = 1, b: str = "x") -> None:
        """Optional."""


SPECS = [
    spec for cls in (*plugin_classes().values(), Everything) for spec in cls.declared_commands()
]
WORDS = st.sampled_from(
    [
        "@ann:test",
        "@room",
        "P-12",
        "p12",
        "#3",
        "12",
        "-1",
        "1e999",
        "nan",
        "yes",
        "off",
        '"quoted words"',
        "'single",
        '"',
        "“curly”",
        "|",
        "\n",
        "polls.reminder_hours",
        "reset",
        "grant",
        "revoke",
        "me",
        "councillor",
        "room.role_levels.x",
        "{}",
        "[1,",
        "ünïcödé",
        "🗳️",
        "https://matrix.to/#/@bob:test",
        "\t",
        "\u2060",
        "\x00",
    ]
)
TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(WORDS, st.text(max_size=12)), max_size=12).map(" ".join),
)


@FUZZ
@given(spec=st.sampled_from(SPECS), text=TEXT)
def test_parsing_either_succeeds_or_says_what_to_type(spec, text):
    try:
        args, kwargs = asyncio.run(spec.parse(text, None))
    except UsageError as exc:
        assert isinstance(exc.message, str)
    else:
        assert isinstance(args, list) and isinstance(kwargs, dict)


@FUZZ
@given(text=TEXT)
def test_finding_and_tokenising_never_fail(text):
    classes = {**plugin_classes(), "everything": Everything}
    index = CommandIndex.build({name: cls.declared_commands() for name, cls in classes.items()})
    for spec, rest in index.candidates(text):
        assert rest.strip() in text
        names = {name.split()[0] for name in (spec.name, *spec.aliases)}
        assert text.split()[0].lower() in names
    assert isinstance(tokenize(text), list)


def test_the_bot_survives_anything_said_to_it(tmp_path):
    """Random commands from a resident and a moderator: never an apology, never more than one
    answer in the room per message, and the stored settings stay valid."""
    runner = asyncio.Runner()
    with runner:
        h = runner.run(BotHarness.start(tmp_path, plugin_classes(), limits={"sends_per_second": 0}))
        room = h.room(members=["@ann:test"], power={"@boss:test": 100})
        names = sorted(c.name for c in h.bot.commands() if c.name != "chatty")  # says 5 things

        @FUZZ
        @given(
            sender=st.sampled_from(["@ann:test", MODERATOR, "@boss:test"]),
            name=st.sampled_from(names),
            text=TEXT,
        )
        def say(sender, name, text):
            calls.append(name)
            h.clock.advance(timedelta(minutes=5))  # a human pace: no flood limits in the way
            before = len(h.transport.sent)
            event = runner.run(h.say(room, sender, f"!{name} {text}"))
            replies = [
                s
                for s in h.transport.sent[before:]
                if s.room_id == room
                and s.content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
                == event.event_id
            ]
            assert len(replies) <= 1
            assert not any(APOLOGY in s.body for s in h.transport.sent[before:])
            for plugin, model in h.bot.room_settings.models.items():
                overrides = runner.run(h.bot.room_settings.overrides(room, plugin))
                model.model_validate({**h.bot.settings.plugins.get(plugin, {}), **overrides})

        calls: list[str] = []
        try:
            say()
        finally:
            runner.run(h.close())
        assert len(calls) >= 200
