"""Finding plugins and checking them before they load.

Every plugin, built-in or installed, is found the same way: its class is registered under the
entry-point group ``civicbot.plugins`` (civicbot's own ``pyproject.toml`` registers the built-ins,
which live in ``plugins/`` and import as ``civicbot_plugins``). ``bot.extra_plugins`` adds classes
by import path, for trying a plugin out without packaging it. All go through the same checks.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ValidationError

from civicbot.config import describe_validation_error
from civicbot.core.plugin import Plugin
from civicbot.policy.plugin_config import CORE_SECTIONS, MOVED_TO_LIMITS

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "civicbot.plugins"


class PluginLoadError(Exception):
    """Loading stopped; the message says which plugin and why."""


BUILTIN_MODULE = "civicbot_plugins."


def discover(
    extra: list[str] | tuple[str, ...] = (), *, builtin_only: bool = False
) -> dict[str, type[Plugin]]:
    """Every available plugin class by name: the ``civicbot.plugins`` entry points (only
    civicbot's own built-ins with ``builtin_only``), then ``extra`` import paths
    (``"package.module:PluginClass"``, from ``bot.extra_plugins``)."""
    found: dict[str, type[Plugin]] = {}
    entries = sorted(entry_points(group=ENTRY_POINT_GROUP), key=_builtins_first)
    for entry in entries:
        if builtin_only and not entry.value.startswith(BUILTIN_MODULE):
            continue
        try:
            cls = entry.load()
        except Exception as exc:
            raise PluginLoadError(
                f"plugin '{entry.name}' ({entry.value}) failed to import: {exc}"
            ) from exc
        _add(found, cls, entry.value)
    for path in extra:
        module_name, _, attr = path.partition(":")
        if not attr:
            raise PluginLoadError(f"bot.extra_plugins: write '{path}' as 'package.module:Class'")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except Exception as exc:
            raise PluginLoadError(f"bot.extra_plugins: cannot import '{path}': {exc}") from exc
        _add(found, cls, path)
    return found


def _builtins_first(entry: EntryPoint) -> tuple[bool, str]:
    return (not entry.value.startswith(BUILTIN_MODULE), entry.name)


def _add(found: dict[str, type[Plugin]], cls: Any, origin: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Plugin) and cls.name):
        raise PluginLoadError(f"{origin} does not export a Plugin subclass with a name")
    if cls.name in CORE_SECTIONS or cls.name in found:
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
