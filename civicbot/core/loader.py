"""Finding plugins and checking them before they load.

Every plugin, built-in or installed, is found the same way: its class is registered under the
entry-point group ``civicbot.plugins`` (civicbot's own ``pyproject.toml`` registers the built-ins,
which live in ``plugins/`` and import as ``civicbot_plugins``). ``bot.extra_plugins`` adds classes
by import path, for trying a plugin out without packaging it. All go through the same checks.

Every problem is collected, not only the first: one broken third-party plugin is named together
with everything else that is wrong, in one run of ``check-config`` or ``run``. A plugin whose
table says ``required = false`` may be broken without stopping the bot: it is left out and said
loudly (an ERROR line at every start), so an operator can keep the neighbourhood's bot running
while a plugin's author mends theirs.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ValidationError

from civicbot.config import describe_validation_error
from civicbot.core.plugin import Plugin
from civicbot.policy.plugin_config import CORE_SECTIONS, MOVED_TO_LIMITS

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "civicbot.plugins"


class PluginLoadError(Exception):
    """Loading stopped; the message says which plugin(s) and why."""


@dataclass(frozen=True)
class PluginProblem:
    """One plugin that cannot load: its name (the entry point's, or the import path given in
    ``bot.extra_plugins``) and why, in words an operator can act on."""

    name: str
    why: str


BUILTIN_MODULE = "civicbot_plugins."


def discover_all(
    extra: list[str] | tuple[str, ...] = (), *, builtin_only: bool = False
) -> tuple[dict[str, type[Plugin]], list[PluginProblem]]:
    """Every plugin class that imports, by name, and every one that does not: the
    ``civicbot.plugins`` entry points (only civicbot's own built-ins with ``builtin_only``),
    then ``extra`` import paths (``"package.module:PluginClass"``, from ``bot.extra_plugins``)."""
    found: dict[str, type[Plugin]] = {}
    problems: list[PluginProblem] = []
    entries = sorted(entry_points(group=ENTRY_POINT_GROUP), key=_builtins_first)
    for entry in entries:
        if builtin_only and not entry.value.startswith(BUILTIN_MODULE):
            continue
        try:
            cls = entry.load()
        except Exception as exc:
            why = f"plugin '{entry.name}' ({entry.value}) failed to import: {exc}"
            problems.append(PluginProblem(entry.name, why))
            continue
        _add(found, problems, cls, entry.value, entry.name)
    for path in extra:
        module_name, _, attr = path.partition(":")
        if not attr:
            why = f"bot.extra_plugins: write '{path}' as 'package.module:Class'"
            problems.append(PluginProblem(path, why))
            continue
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except Exception as exc:
            why = f"bot.extra_plugins: cannot import '{path}': {exc}"
            problems.append(PluginProblem(path, why))
            continue
        _add(found, problems, cls, path, path)
    return found, problems


def discover(
    extra: list[str] | tuple[str, ...] = (), *, builtin_only: bool = False
) -> dict[str, type[Plugin]]:
    """Every available plugin class by name, or :class:`PluginLoadError` naming every plugin
    that cannot load (see :func:`discover_all` to start without the optional ones)."""
    found, problems = discover_all(extra, builtin_only=builtin_only)
    if problems:
        raise PluginLoadError("; ".join(problem.why for problem in problems))
    return found


def optional_plugins(tables: dict[str, dict[str, Any]]) -> set[str]:
    """The plugins whose table says ``required = false``: read raw, since a plugin that does
    not import has no model to read its table with."""
    return {name for name, table in tables.items() if table.get("required") is False}


def split_problems(
    problems: list[PluginProblem], tables: dict[str, dict[str, Any]]
) -> tuple[list[PluginProblem], list[PluginProblem]]:
    """(the problems that stop the bot, those of optional plugins it starts without)."""
    optional = optional_plugins(tables)
    fatal = [p for p in problems if p.name not in optional]
    return fatal, [p for p in problems if p.name in optional]


def _builtins_first(entry: EntryPoint) -> tuple[bool, str]:
    return (not entry.value.startswith(BUILTIN_MODULE), entry.name)


def _add(
    found: dict[str, type[Plugin]],
    problems: list[PluginProblem],
    cls: Any,
    origin: str,
    name: str,
) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Plugin) and cls.name):
        why = f"{origin} does not export a Plugin subclass with a name"
        problems.append(PluginProblem(name, why))
    elif cls.name in CORE_SECTIONS or cls.name in found:
        problems.append(PluginProblem(cls.name, f"two plugins are called '{cls.name}' ({origin})"))
    else:
        found[cls.name] = cls


def validate_plugin_config(
    classes: dict[str, type[Plugin]],
    tables: dict[str, dict[str, Any]],
    broken: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    """Check every ``[plugins.<name>]`` table against its plugin's model; dotted-path errors.
    The tables of ``broken`` plugins (reported already: they did not import) are passed over."""
    problems = []
    for name, table in tables.items():
        if name in broken:
            continue
        cls = classes.get(name)
        if cls is None:
            known = ", ".join(sorted(classes)) or "none"
            problems.append(
                f"plugins.{name}: no plugin called '{name}' is installed (installed: {known})"
            )
            continue
        moved = sorted(MOVED_TO_LIMITS & set(table)) if name == "admin" else []
        if moved:
            problems.extend(
                f"plugins.admin.{key}: flood limits moved to the [limits] section" for key in moved
            )
            table = {k: v for k, v in table.items() if k not in MOVED_TO_LIMITS}
        try:
            cls.Config.model_validate(table)
        except ValidationError as exc:
            problems.extend(
                describe_validation_error(exc, prefix=f"plugins.{name}", model=cls.Config)
            )
    return problems
