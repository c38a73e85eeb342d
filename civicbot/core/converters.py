"""Converters: how one piece of a command's text becomes a typed argument.

A converter is named in the argument's annotation, either as a class (``text: Rest``) or as
the metadata of an ``Annotated`` type (``poll: Annotated[int, ItemId("P")]``). Its ``convert``
may be a plain or an ``async`` method, so a converter can load the item an id names and answer
"No poll P-9 here" itself. It raises :class:`UsageError` for input that does not fit.

Built in: ``str`` (one word or a quoted phrase), ``int``, ``float``, ``bool``, :class:`Rest`,
:class:`Lines`, :class:`UserId`, :class:`ItemId`, and in :mod:`civicbot.core.dates` ``When`` and
``Duration``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any

from civicbot.core.context import Context


class UsageError(Exception):
    """The input did not fit the command; the reply shows what to type instead."""

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message


class CommandError(Exception):
    """The command was understood but cannot be done; the message is shown as it is."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Converter:
    """Turns one piece of text into a value. ``metavar`` names it in the generated usage;
    ``greedy`` converters take the rest of the input instead of one word."""

    metavar: str = "value"
    greedy: bool = False

    def convert(self, raw: str, ctx: Context[Any]) -> Any | Awaitable[Any]:
        raise NotImplementedError


class Rest(str, Converter):
    """Everything after the previous arguments, new lines kept."""

    metavar = "text"
    greedy = True

    @classmethod
    def convert(cls, raw: str, ctx: Context[Any]) -> str:
        raw = raw.strip()
        if not raw:
            raise UsageError()
        return raw


class Lines(list[str], Converter):
    """The rest of the input split on new lines or on `` | ``: a question and its options."""

    metavar = "lines"
    greedy = True

    @classmethod
    def convert(cls, raw: str, ctx: Context[Any]) -> list[str]:
        return split_parts(raw)


def split_parts(raw: str) -> list[str]:
    """Split multi-part input on new lines, or on ``|`` when it is all on one line."""
    raw = raw.strip()
    parts = raw.split("\n") if "\n" in raw else raw.split("|")
    return [part.strip() for part in parts if part.strip()]


class UserId(str, Converter):
    """A Matrix user id (``@name:server``); a bare mention pill's text works too."""

    metavar = "@user:server"
    _pattern = re.compile(r"^@[^\s:]+:[A-Za-z0-9.\-\[\]:]+$")

    @classmethod
    def convert(cls, raw: str, ctx: Context[Any]) -> str:
        value = raw.strip().strip("<>")
        if value.startswith("https://matrix.to/#/"):
            value = value.removeprefix("https://matrix.to/#/")
        if not cls._pattern.match(value):
            raise UsageError(f"'{short(raw)}' is not a Matrix id; write it like @name:example.org")
        return value


class ItemId(Converter):
    """The number of an item shown to people as ``<prefix>-<number>``: ``Annotated[int,
    ItemId("P")]`` accepts ``P-12``, ``p12``, ``#12`` or ``12`` and gives 12."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.metavar = f"{prefix}-number"
        self._pattern = re.compile(rf"(?:{re.escape(prefix)}-?)?#?(\d{{1,9}})", re.I)

    def convert(self, raw: str, ctx: Context[Any]) -> int:
        match = self._pattern.fullmatch(raw.strip())
        if not match:
            raise UsageError(f"'{short(raw)}' is not an id like {self.prefix}-12")
        return int(match.group(1))


# No number a person types to civicbot needs more digits than this; Python refuses to read
# ones of over 4,300 digits at all (a ValueError deep in a plugin, so the apology).
MAX_DIGITS = 15


def whole_number(
    raw: str, lowest: int | None = None, highest: int | None = None, what: str = "a number"
) -> int:
    """``raw`` as a whole number from ``lowest`` to ``highest`` (either may be open), or a
    :class:`UsageError` that says what to type. Every number a person types is read through
    this (or the :class:`Number` converter), however long or odd it is."""
    text = raw.strip().lstrip("#").replace("\u2212", "-")
    digits = text.removeprefix("-").removeprefix("+")
    if not digits.isascii() or not digits.isdigit():
        raise UsageError(f"'{short(raw)}' should be {what}, like {lowest or 1}")
    if len(digits.lstrip("0")) > MAX_DIGITS:
        value = None
    else:
        value = int(text)
    if (
        value is None
        or (lowest is not None and value < lowest)
        or (highest is not None and value > highest)
    ):
        raise UsageError(f"'{short(raw)}' is out of range: {_range_text(lowest, highest, what)}")
    return value


def _range_text(lowest: int | None, highest: int | None, what: str) -> str:
    if lowest is not None and highest is not None:
        return f"type {what} from {lowest} to {highest}"
    if lowest is not None:
        return f"type {what} of {lowest} or more"
    if highest is not None:
        return f"type {what} of {highest} or less"
    return f"type {what} of at most {MAX_DIGITS} digits"


class Number(Converter):
    """A whole number in a range: ``count: Annotated[int, Number(1, 50)]``."""

    def __init__(self, lowest: int | None = None, highest: int | None = None, what: str = ""):
        self.lowest = lowest
        self.highest = highest
        self.what = what or "a number"
        self.metavar = "number"

    def convert(self, raw: str, ctx: Context[Any]) -> int:
        return whole_number(raw, self.lowest, self.highest, self.what)


def short(text: str, limit: int = 40) -> str:
    """``text`` on one line, cut to ``limit`` characters for echoing back."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
