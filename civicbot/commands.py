"""Commands as typed objects: a decorator declares one, its signature says how to parse it.

    PollId = item_id("P")

    @command("poll close", requires=Role.EVERYONE)
    async def close(self, ctx: CommandContext, poll: PollId) -> None:
        \"\"\"Close a poll now and post the results.\"\"\"

Arguments come from the annotations after ``ctx``: ``str`` (one word), ``int``, ``float``,
:class:`Rest` (everything left, new lines kept), :class:`Lines` (the rest split on new lines or
`` | ``), :class:`UserId`, ``item_id("P")`` and any :class:`Converter`. A default makes one
optional; ``*words: str`` takes any number.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, get_type_hints

from civicbot.permissions import Role

if TYPE_CHECKING:
    from civicbot.context import Context as CommandContext

CURLY_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "«": '"', "»": '"'})


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
    """Turns one piece of text into a value. ``metavar`` names it in the generated usage."""

    metavar: ClassVar[str] = "value"
    greedy: ClassVar[bool] = False  # takes the rest of the input instead of one word

    @classmethod
    def convert(cls, raw: str, ctx: CommandContext) -> Any:
        raise NotImplementedError


class Rest(str, Converter):
    """Everything after the previous arguments, new lines kept."""

    metavar = "text"
    greedy = True

    @classmethod
    def convert(cls, raw: str, ctx: CommandContext) -> str:
        raw = raw.strip()
        if not raw:
            raise UsageError()
        return raw


class Lines(list, Converter):
    """The rest of the input split on new lines or on `` | ``: a question and its options."""

    metavar = "lines"
    greedy = True

    @classmethod
    def convert(cls, raw: str, ctx: CommandContext) -> list[str]:
        return split_parts(raw)


def split_parts(raw: str) -> list[str]:
    """Split multi-part input on new lines, or on ``|`` when it is all on one line."""
    raw = raw.strip()
    parts = raw.splitlines() if "\n" in raw else raw.split("|")
    return [part.strip() for part in parts if part.strip()]


class UserId(str, Converter):
    """A Matrix user id (``@name:server``); a bare mention pill's text works too."""

    metavar = "@user:server"
    _pattern = re.compile(r"^@[^\s:]+:[A-Za-z0-9.\-\[\]:]+$")

    @classmethod
    def convert(cls, raw: str, ctx: CommandContext) -> str:
        value = raw.strip().strip("<>")
        if value.startswith("https://matrix.to/#/"):
            value = value.removeprefix("https://matrix.to/#/")
        if not cls._pattern.match(value):
            raise UsageError(f"'{_short(raw)}' is not a Matrix id; write it like @name:example.org")
        return value


class _ItemIdMeta(type):
    def __getitem__(cls, prefix: str) -> type[ItemIdOf]:
        return type(
            f"ItemId_{prefix}", (ItemIdOf,), {"prefix": prefix, "metavar": f"{prefix}-number"}
        )


class ItemId(metaclass=_ItemIdMeta):
    """``ItemId["P"]`` accepts ``P-12``, ``p12`` or ``12`` and gives the number 12.

    Linters read a string inside an annotation as a forward reference, so define the type once
    at module level with :func:`item_id` instead: ``PollId = item_id("P")``."""


def item_id(prefix: str) -> type[ItemIdOf]:
    """The converter for ids shown to users as ``<prefix>-<number>``."""
    return ItemId[prefix]


class ItemIdOf(int, Converter):
    prefix: ClassVar[str] = ""

    @classmethod
    def convert(cls, raw: str, ctx: CommandContext) -> int:
        match = re.fullmatch(rf"(?:{cls.prefix}-?)?#?(\d{{1,9}})", raw.strip(), re.I)
        if not match:
            raise UsageError(f"'{_short(raw)}' is not an id like {cls.prefix}-12")
        return int(match.group(1))


@dataclass
class Parameter:
    name: str
    converter: Any
    optional: bool
    default: Any
    variadic: bool = False

    @property
    def greedy(self) -> bool:
        return bool(getattr(self.converter, "greedy", False))

    @property
    def metavar(self) -> str:
        if isinstance(self.converter, type) and issubclass(self.converter, Converter):
            name = self.converter.metavar
            return self.name.replace("_", " ") if name in ("text", "value") else name
        return self.name.replace("_", " ")


@dataclass
class Command:
    """A command declared by a plugin (filled in by the loader with its owner)."""

    name: str  # "poll" or "poll close"
    func: Callable[..., Awaitable[Any]]
    requires: str = Role.EVERYONE
    aliases: tuple[str, ...] = ()
    hidden: bool = False
    params: list[Parameter] = field(default_factory=list)
    plugin: str = ""
    examples: tuple[str, ...] = ()

    @property
    def help(self) -> str:
        doc = inspect.getdoc(self.func) or ""
        return doc.split("\n", 1)[0].strip()

    @property
    def details(self) -> str:
        doc = inspect.getdoc(self.func) or ""
        return doc.split("\n", 1)[1].strip() if "\n" in doc else ""

    def usage(self, prefix: str = "!") -> str:
        parts = [f"{prefix}{self.name}"]
        for param in self.params:
            label = param.metavar
            if param.variadic:
                parts.append(f"[{label}…]")
            elif param.optional:
                parts.append(f"[{label}]")
            else:
                parts.append(f"<{label}>")
        return " ".join(parts)

    def parse(self, text: str, ctx: CommandContext) -> tuple[list[Any], dict[str, Any]]:
        """Convert ``text`` (everything after the command name) into call arguments."""
        kwargs: dict[str, Any] = {}
        rest = text.translate(CURLY_QUOTES).strip()
        for param in self.params:
            if param.variadic:
                words = tokenize(rest)
                return [_convert(param, word, ctx) for word in words], kwargs
            if param.greedy:
                if not rest and param.optional:
                    kwargs[param.name] = param.default
                else:
                    kwargs[param.name] = _convert(param, rest, ctx)
                rest = ""
                continue
            word, rest = next_token(rest)
            if word is None:
                if param.optional:
                    kwargs[param.name] = param.default
                    continue
                raise UsageError()
            kwargs[param.name] = _convert(param, word, ctx)
        if rest.strip():
            raise UsageError(f"I didn't expect '{_short(rest)}' at the end")
        return [], kwargs


def _convert(param: Parameter, raw: str, ctx: CommandContext) -> Any:
    conv = param.converter
    try:
        if isinstance(conv, type) and issubclass(conv, Converter):
            return conv.convert(raw, ctx)
        if conv is int:
            return int(raw)
        if conv is float:
            return float(raw.replace(",", "."))
        if conv is bool:
            return _to_bool(raw)
        return conv(raw) if conv not in (str, Any, inspect.Parameter.empty) else raw
    except UsageError:
        raise
    except (TypeError, ValueError):
        kind = {int: "a whole number", float: "a number"}.get(conv, f"a {param.metavar}")
        raise UsageError(f"'{_short(raw)}' should be {kind}") from None


def _to_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("yes", "on", "true", "1", "y"):
        return True
    if value in ("no", "off", "false", "0", "n"):
        return False
    raise ValueError(raw)


def _short(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_TOKEN = re.compile(r'\s*(?:"([^"]*)"|\'([^\']*)\'|(\S+))')


def next_token(text: str) -> tuple[str | None, str]:
    """The first word (or quoted phrase) of ``text``, and what follows it."""
    match = _TOKEN.match(text)
    if not match:
        return None, ""
    word = next(group for group in match.groups() if group is not None)
    return word, text[match.end() :]


def tokenize(text: str) -> list[str]:
    words: list[str] = []
    while True:
        word, text = next_token(text)
        if word is None:
            return words
        words.append(word)


def command(
    name: str,
    *,
    requires: str = Role.EVERYONE,
    aliases: tuple[str, ...] = (),
    hidden: bool = False,
    examples: tuple[str, ...] = (),
) -> Callable[[Any], Any]:
    """Declare a command on a plugin method. ``name`` may hold a subcommand: ``"poll close"``."""

    def decorate(func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        func.__civicbot_command__ = Command(  # type: ignore[attr-defined]
            name=" ".join(name.lower().split()),
            func=func,
            requires=requires,
            aliases=aliases,
            hidden=hidden,
            params=_parameters(func),
            examples=examples,
        )
        return func

    return decorate


def _parameters(func: Callable[..., Any]) -> list[Parameter]:
    signature = inspect.signature(func)
    hints = get_type_hints(func, include_extras=False, globalns=_hint_namespace(func))
    params = []
    for param in list(signature.parameters.values())[2:]:  # skip self, ctx
        converter = hints.get(param.name, str)
        converter = _unwrap_optional(converter)
        params.append(
            Parameter(
                name=param.name,
                converter=converter,
                optional=param.default is not inspect.Parameter.empty,
                default=None if param.default is inspect.Parameter.empty else param.default,
                variadic=param.kind is inspect.Parameter.VAR_POSITIONAL,
            )
        )
    return params


def _hint_namespace(func: Callable[..., Any]) -> dict[str, Any]:
    namespace = dict(getattr(func, "__globals__", {}))
    namespace.setdefault("ItemId", ItemId)
    return namespace


def _unwrap_optional(tp: Any) -> Any:
    args = getattr(tp, "__args__", None)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp
