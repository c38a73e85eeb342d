"""Typed commands: parsing from signatures, converters, generated usage."""

from __future__ import annotations

from typing import Annotated

import pytest

from civicbot.core.commands import ItemId, Lines, Rest, UsageError, UserId, command, split_parts

PollId = Annotated[int, ItemId("P")]


class Holder:
    @command("poll close", examples=("!poll close P-3",))
    async def close(self, ctx, poll: PollId, reason: Rest | None = None) -> None:
        """Close a poll now."""

    @command("give")
    async def give(self, ctx, who: UserId, count: int, *words: str) -> None:
        """Give things."""

    @command("plain")
    async def plain(self, ctx) -> None:
        """No arguments."""

    @command("ask")
    async def ask(self, ctx, parts: Lines) -> None:
        """Ask a question."""


def spec(func):
    return func.__civicbot_command__


def test_usage_is_generated_from_the_signature():
    assert spec(Holder.close).usage() == "!poll close <P-number> [reason]"
    assert spec(Holder.give).usage("?") == "?give <@user:server> <count> [words…]"
    assert spec(Holder.close).help == "Close a poll now."


async def test_item_ids_accept_the_forms_people_type():
    for raw in ("P-12", "p12", "12", "P12", "#12"):
        assert await spec(Holder.close).parse(raw, None) == ([], {"poll": 12, "reason": None})
    with pytest.raises(UsageError, match="not an id like P-12"):
        await spec(Holder.close).parse("M-12", None)


async def test_rest_keeps_the_remaining_text():
    _, kwargs = await spec(Holder.close).parse("P-1  because  it is done", None)
    assert kwargs == {"poll": 1, "reason": "because  it is done"}


async def test_user_ids_ints_and_varargs():
    args, kwargs = await spec(Holder.give).parse("@ann:example.org 3 apples pears", None)
    # With *words every argument goes positionally (by name, the call would fail: the
    # arguments before *words can't be passed both ways).
    assert (args, kwargs) == (["@ann:example.org", 3, "apples", "pears"], {})
    with pytest.raises(UsageError, match="should be a whole number"):
        await spec(Holder.give).parse("@ann:example.org three", None)
    with pytest.raises(UsageError, match="not a Matrix id"):
        await spec(Holder.give).parse("ann 3", None)


async def test_missing_required_argument_is_a_usage_error():
    with pytest.raises(UsageError):
        await spec(Holder.give).parse("", None)


async def test_curly_quotes_from_phones_group_words():
    args, _ = await spec(Holder.give).parse("@a:b.c 1 “two words” three", None)
    assert args[2:] == ["two words", "three"]


async def test_multi_part_input_splits_on_newlines_or_bars():
    assert split_parts("Where?\nPark\nHall") == ["Where?", "Park", "Hall"]
    assert split_parts("Where? | Park | Hall") == ["Where?", "Park", "Hall"]
    assert split_parts("A | B\nC") == ["A | B", "C"]  # new lines win when present
    assert await spec(Holder.ask).parse("Q? | a | b", None) == ([], {"parts": ["Q?", "a", "b"]})


async def test_unexpected_extra_words_are_reported():
    with pytest.raises(UsageError, match="didn't expect 'x y'"):
        await spec(Holder.plain).parse("x y", None)


async def test_bad_input_is_echoed_back_short():
    with pytest.raises(UsageError) as err:
        await spec(Holder.close).parse("x" * 5000, None)
    assert len(err.value.message) < 100
    with pytest.raises(UsageError) as err:
        await spec(Holder.give).parse("y" * 5000 + " 3", None)
    assert len(err.value.message) < 100


def test_only_a_newline_ends_a_line_of_multi_part_input():
    """Clients end lines with \\n; \\r, U+2028, U+0085 and form feeds inside a part stay
    characters (str.splitlines would split on them, and a quoted command could hide there)."""
    from civicbot_plugins.polls.parsing import split_input

    for separator in ("\r", "\u2028", "\u2029", "\x85", "\x0c", "\x1e"):
        text = f"Which day?{separator}!outcome P-5 hidden\nSaturday\nSunday"
        assert split_parts(text)[0] == f"Which day?{separator}!outcome P-5 hidden"
        assert len(split_input(text)) == 3
