"""Finding plugins and loading them all-or-nothing.

Built-in plugins are the packages under ``plugins/`` (imported as ``civicbot_plugins``), each
exporting ``PLUGIN = TheirPluginClass``. Installed ones register the class under the entry-point
group ``civicbot.plugins``. Both go through exactly the same checks.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from civicbot.commands import Command
from civicbot.config import describe_validation_error
from civicbot.plugin import Plugin
from civicbot.roomsettings import ROOM

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "civicbot.plugins"


class PluginLoadError(Exception):
    """Loading stopped; the message says which plugin and why."""


def discover(extra: list[str] | tuple[str, ...] = ()) -> dict[str, type[Plugin]]:
    """Every available plugin class by name: built-ins, entry points, then ``extra`` import
    paths (``"package.module:PluginClass"``, from ``bot.extra_plugins``)."""
    found: dict[str, type[Plugin]] = {}
    import civicbot_plugins

    for module in sorted(pkgutil.iter_modules(civicbot_plugins.__path__), key=lambda m: m.name):
        if not module.ispkg:
            continue
        qualified = f"civicbot_plugins.{module.name}"
        try:
            package = importlib.import_module(qualified)
        except Exception as exc:
            raise PluginLoadError(
                f"built-in plugin '{module.name}' failed to import: {exc}"
            ) from exc
        _add(found, getattr(package, "PLUGIN", None), qualified)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry.load()
        except Exception as exc:
            raise PluginLoadError(
                f"plugin '{entry.name}' ({entry.value}) failed to import: {exc}"
            ) from exc
        _add(found, cls, entry.value)
    for path in extra:
        module_name, _, attr = path.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr or "PLUGIN")
        except Exception as exc:
            raise PluginLoadError(f"bot.extra_plugins: cannot import '{path}': {exc}") from exc
        _add(found, cls, path)
    return found


def _add(found: dict[str, type[Plugin]], cls: Any, origin: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Plugin) and cls.name):
        raise PluginLoadError(f"{origin} does not export a Plugin subclass with a name")
    if cls.name == ROOM or cls.name in found:
        raise PluginLoadError(f"two plugins are called '{cls.name}' ({origin})")
    found[cls.name] = cls


def validate_plugin_config(
    classes: dict[str, type[Plugin]], tables: dict[str, dict[str, Any]]
) -> list[str]:
    """Check every ``[plugins.<name>]`` table against its plugin's model; dotted-path errors."""
    problems = []
    for name, table in tables.items():
        cls = classes.get(name)
        if cls is None:
            known = ", ".join(sorted(classes)) or "none"
            problems.append(
                f"plugins.{name}: no plugin called '{name}' is installed (installed: {known})"
            )
            continue
        try:
            cls.Config.model_validate(table)
        except ValidationError as exc:
            problems.extend(
                describe_validation_error(exc, prefix=f"plugins.{name}", model=cls.Config)
            )
    return problems


@dataclass
class CommandIndex:
    """Commands by name and alias; a subcommand is found before its parent."""

    by_name: dict[str, Command]

    @classmethod
    def build(cls, classes: dict[str, type[Plugin]]) -> CommandIndex:
        by_name: dict[str, Command] = {}
        for plugin_name, plugin_cls in classes.items():
            for spec in plugin_cls.declared_commands():
                spec.plugin = plugin_name
                for name in (spec.name, *spec.aliases):
                    if name in by_name:
                        other = by_name[name].plugin
                        raise PluginLoadError(
                            f"plugins '{other}' and '{plugin_name}' both define !{name}"
                        )
                    by_name[name] = spec
        return cls(by_name)

    def candidates(self, text: str) -> list[tuple[Command, str]]:
        """The commands ``text`` (after the prefix) may mean, most specific first, each with the
        rest of the text. ``!poll close P-1`` is the subcommand, but ``!poll Close the park?``
        is a poll whose question starts with "Close": the dispatcher falls back to the parent
        when the subcommand's arguments do not parse."""
        words = text.split(None, 2)
        if not words:
            return []
        found = []
        first = words[0].lower()
        if len(words) > 1:
            sub = self.by_name.get(f"{first} {words[1].lower()}")
            if sub is not None:
                found.append((sub, _rest_after(text, 2)))
        parent = self.by_name.get(first)
        if parent is not None:
            found.append((parent, _rest_after(text, 1)))
        return found

    def unique(self) -> list[Command]:
        seen: dict[int, Command] = {}
        for spec in self.by_name.values():
            seen.setdefault(id(spec), spec)
        return sorted(seen.values(), key=lambda c: c.name)


def _rest_after(text: str, words: int) -> str:
    """What follows the first ``words`` words, with its new lines intact."""
    rest = text
    for _ in range(words):
        parts = rest.lstrip().split(None, 1)
        rest = parts[1] if len(parts) > 1 else ""
    return rest
