"""Commands as typed objects: a decorator declares one, its signature says how to parse it.

    PollId = Annotated[int, ItemId("P")]

    @command("poll", open_text=True)
    async def poll(self, ctx: Context[PollsConfig], spec: Lines) -> None:
        \"\"\"Start a poll.\"\"\"

    @command("poll close", parent=poll, examples=("!poll close P-12",))
    async def close(self, ctx: Context[PollsConfig], poll: PollId) -> None:
        \"\"\"Close a poll now and post the results.\"\"\"

Arguments come from the annotations after ``ctx`` (see :mod:`civicbot.core.converters`). A default
makes one optional; ``*words: str`` takes any number. The first docstring line is the help
text; the usage line is generated.

Subcommands are declared as children of their parent (``parent=``). The word after the parent
picks the child; a parent declared ``open_text=True`` takes free text that may begin with such a
word ("!poll Close the park early?"), so when the child's arguments do not parse, the whole
text goes to the parent instead.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, cast, get_args, get_origin, get_type_hints

from civicbot.core.context import Context
from civicbot.core.converters import (
    MAX_DIGITS,
    CommandError,
    Converter,
    ItemId,
    Lines,
    Rest,
    UsageError,
    UserId,
    short,
    split_parts,
    whole_number,
)
from civicbot.policy.roles import Role

__all__ = [
    "Command",
    "CommandError",
    "CommandIndex",
    "Converter",
    "ItemId",
    "Lines",
    "Rest",
    "UsageError",
    "UserId",
    "command",
    "split_parts",
    "tokenize",
]

# A command or hook method: the decorators hand it back unchanged, so its type survives them.
HandlerT = TypeVar("HandlerT", bound=Callable[..., Awaitable[Any]])

CURLY_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "«": '"', "»": '"'})


class CommandDeclarationError(Exception):
    """A command is declared in a way that cannot work (named at load time)."""


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
        if isinstance(self.converter, Converter) or (
            isinstance(self.converter, type) and issubclass(self.converter, Converter)
        ):
            name = str(self.converter.metavar)
            return self.name.replace("_", " ") if name in ("text", "value") else name
        return self.name.replace("_", " ")


@dataclass
class Command:
    """A command declared by a plugin (filled in by the loader with its owner)."""

    name: str  # the full name: "poll" or "poll close"
    func: Callable[..., Awaitable[Any]]
    requires: str = Role.EVERYONE
    # Other names; a subcommand's are words after its parent's ("give" for "role grant") until
    # the index makes them full names under every name of the parent ("role give").
    aliases: tuple[str, ...] = ()
    hidden: bool = False
    params: list[Parameter] = field(default_factory=list)
    plugin: str = ""
    examples: tuple[str, ...] = ()
    parent: Command | None = None
    open_text: bool = False
    alias_words: tuple[str, ...] = ()  # a subcommand's aliases as declared: ("give",)

    @property
    def help(self) -> str:
        """The docstring's first paragraph, on one line however the source wraps it."""
        return split_help(inspect.getdoc(self.func) or "")[0]

    @property
    def details(self) -> str:
        """The rest of the docstring (``!help <command>`` shows it after the help line)."""
        return split_help(inspect.getdoc(self.func) or "")[1]

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

    async def parse(self, text: str, ctx: Context[Any]) -> tuple[list[Any], dict[str, Any]]:
        """Convert ``text`` (everything after the command name) into call arguments."""
        kwargs: dict[str, Any] = {}
        rest = text.translate(CURLY_QUOTES).strip()
        for param in self.params:
            if param.variadic:
                # Everything goes positionally once there are *words: the parameters before
                # them can't also be passed by name.
                before = [kwargs[p.name] for p in self.params if p.name in kwargs]
                words = [await _convert(param, word, ctx) for word in tokenize(rest)]
                return [*before, *words], {}
            if param.greedy:
                if not rest and param.optional:
                    kwargs[param.name] = param.default
                else:
                    kwargs[param.name] = await _convert(param, rest, ctx)
                rest = ""
                continue
            word, rest = next_token(rest)
            if word is None:
                if param.optional:
                    kwargs[param.name] = param.default
                    continue
                raise UsageError()
            kwargs[param.name] = await _convert(param, word, ctx)
        if rest.strip():
            raise UsageError(f"I didn't expect '{short(rest)}' at the end")
        return [], kwargs


async def _convert(param: Parameter, raw: str, ctx: Context[Any]) -> Any:
    conv = param.converter
    if _is_converter(conv):
        # A converter says what was wrong itself (UsageError, CommandError); anything else it
        # raises is a bug, and goes to the log and the apology rather than being read as bad
        # input.
        value = cast(Any, conv).convert(raw, ctx)
        return await value if inspect.isawaitable(value) else value
    try:
        if conv is int:
            return whole_number(raw, what="a whole number")
        if conv is float:
            value = float(raw.replace(",", "."))
            if not math.isfinite(value) or abs(value) >= 10**MAX_DIGITS:
                raise UsageError(f"'{short(raw)}' is out of range: type a smaller number")
            return value
        if conv is bool:
            return _to_bool(raw)
        return raw
    except (TypeError, ValueError):
        kind = {int: "a whole number", float: "a number"}.get(conv, f"a {param.metavar}")
        raise UsageError(f"'{short(raw)}' should be {kind}") from None


def split_help(doc: str) -> tuple[str, str]:
    """``(help, details)`` of a docstring: its first paragraph joined into one line, however
    the source wraps it (a help line once stopped mid-sentence at "in a"), and the rest."""
    first, _, rest = doc.strip().partition("\n\n")
    return " ".join(first.split()), rest.strip()


def _is_converter(conv: Any) -> bool:
    return isinstance(conv, Converter) or (isinstance(conv, type) and issubclass(conv, Converter))


BUILT_IN_TYPES = (str, int, float, bool, Any, inspect.Parameter.empty)


def _to_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("yes", "on", "true", "1", "y"):
        return True
    if value in ("no", "off", "false", "0", "n"):
        return False
    raise ValueError(raw)


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
    parent: Callable[..., Any] | None = None,
    open_text: bool = False,
    requires: str | None = None,
    aliases: tuple[str, ...] = (),
    hidden: bool = False,
    examples: tuple[str, ...] = (),
) -> Callable[[HandlerT], HandlerT]:
    """Declare a command on a plugin method.

    ``requires`` is the role needed (a subcommand's default: its parent's; else everyone).
    ``parent`` is the parent command's method when this one is a subcommand; ``name`` is the
    full name (``"poll close"``) and aliases may be the last word alone (``"give"`` for
    ``"role grant"``). ``open_text`` marks a parent whose free text may begin with a
    subcommand's name (see the module docstring)."""
    parent_spec: Command | None = None
    if parent is not None:
        parent_spec = getattr(parent, "__civicbot_command__", None)
        if parent_spec is None:
            raise CommandDeclarationError(f"parent of '{name}' is not a declared command")
    full = " ".join(name.lower().split())
    words = tuple(" ".join(a.lower().split()) for a in aliases)
    if parent_spec is not None:
        prefix = parent_spec.name + " "
        if not full.startswith(prefix):
            raise CommandDeclarationError(
                f"!{full} is declared under !{parent_spec.name}: call it '{prefix}{full}'"
            )
        words = tuple(a.removeprefix(prefix) for a in words)

    def decorate(func: HandlerT) -> HandlerT:
        func.__civicbot_command__ = Command(  # type: ignore[attr-defined]
            name=full,
            func=func,
            requires=requires or (parent_spec.requires if parent_spec else Role.EVERYONE),
            aliases=words,
            alias_words=words,
            hidden=hidden,
            params=_parameters(func),
            examples=examples,
            parent=parent_spec,
            open_text=open_text,
        )
        return func

    return decorate


class _Annotations:
    """Stands in for a function whose annotations are only the arguments after ``ctx``."""

    def __init__(self, annotations: dict[str, Any]):
        self.__annotations__ = annotations


def _parameters(func: Callable[..., Any]) -> list[Parameter]:
    signature = inspect.signature(func)
    wanted = list(signature.parameters.values())[2:]  # skip self, ctx
    # Only these annotations are evaluated: ``ctx: Context`` may name a type imported under
    # TYPE_CHECKING, which does not exist when the command is declared.
    raw = getattr(func, "__annotations__", {})
    subset = _Annotations({p.name: raw[p.name] for p in wanted if p.name in raw})
    try:
        hints = get_type_hints(
            subset, globalns=getattr(func, "__globals__", {}), include_extras=True
        )
    except NameError as exc:
        raise CommandDeclarationError(
            f"{func.__qualname__}: can't read its argument types ({exc}); converters and types "
            "an argument names must be importable at module level"
        ) from None
    params = []
    for param in wanted:
        converter = _converter_of(hints.get(param.name, str))
        if not (_is_converter(converter) or converter in BUILT_IN_TYPES):
            raise CommandDeclarationError(
                f"{func.__qualname__}: argument '{param.name}' has type {converter!r}, which no "
                "converter reads; use str, int, float, bool, Rest, Lines, UserId, "
                "Annotated[int, ItemId('X')] or Annotated[T, YourConverter()]"
            )
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


def _converter_of(tp: Any) -> Any:
    """``Annotated[int, ItemId("P")]`` → the ItemId; ``Rest | None`` → Rest; ``int`` → int."""
    tp = _unwrap_optional(tp)
    if get_origin(tp) is Annotated:
        base, *metadata = get_args(tp)
        for meta in metadata:
            if isinstance(meta, Converter) or (
                isinstance(meta, type) and issubclass(meta, Converter)
            ):
                return meta
        return _converter_of(base)
    return tp


def _unwrap_optional(tp: Any) -> Any:
    args = getattr(tp, "__args__", None)
    if args and type(None) in args and get_origin(tp) is not Annotated:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


@dataclass
class CommandIndex:
    """Commands by full name and alias, and the tree of subcommands under their parents."""

    by_name: dict[str, Command]

    @classmethod
    def build(cls, declared: dict[str, list[Command]]) -> CommandIndex:
        """``declared`` is each plugin's commands, by plugin name. Raises
        :class:`CommandDeclarationError` naming the clash or the missing ``parent=``."""
        by_name: dict[str, Command] = {}
        for plugin_name, specs in declared.items():
            for spec in specs:
                spec.plugin = plugin_name
                if spec.parent is not None:
                    spec.aliases = _child_aliases(spec, spec.parent)
                for name in (spec.name, *spec.aliases):
                    if name in by_name:
                        other = by_name[name].plugin
                        raise CommandDeclarationError(
                            f"plugins '{other}' and '{plugin_name}' both define !{name}"
                        )
                    by_name[name] = spec
        for spec in by_name.values():
            first = spec.name.split(" ", 1)[0]
            if spec.parent is None and " " in spec.name and first in by_name:
                raise CommandDeclarationError(
                    f"!{spec.name} is under !{first}: declare it as "
                    f'@command("{spec.name}", parent={first})'
                )
        return cls(by_name)

    def candidates(self, text: str) -> list[tuple[Command, str]]:
        """The command ``text`` (after the prefix) names, with the rest of the text; for a
        subcommand of an ``open_text`` parent, the parent follows as the second reading."""
        words = text.split(None, 2)
        if not words:
            return []
        found = []
        first = words[0].lower()
        if len(words) > 1:
            sub = self.by_name.get(f"{first} {words[1].lower()}")
            if sub is not None:
                found.append((sub, _rest_after(text, 2)))
                if sub.parent is None or not sub.parent.open_text:
                    return found
        parent = self.by_name.get(first)
        if parent is not None:
            found.append((parent, _rest_after(text, 1)))
        return found

    def unique(self) -> list[Command]:
        seen: dict[int, Command] = {}
        for spec in self.by_name.values():
            seen.setdefault(id(spec), spec)
        return sorted(seen.values(), key=lambda c: c.name)


def _child_aliases(child: Command, parent: Command) -> tuple[str, ...]:
    words = (child.name.removeprefix(parent.name + " "), *child.alias_words)
    full = [f"{p} {w}" for p in (parent.name, *parent.aliases) for w in words]
    return tuple(name for name in dict.fromkeys(full) if name != child.name)


def _rest_after(text: str, words: int) -> str:
    """What follows the first ``words`` words, with its new lines intact."""
    rest = text
    for _ in range(words):
        parts = rest.lstrip().split(None, 1)
        rest = parts[1] if len(parts) > 1 else ""
    return rest
