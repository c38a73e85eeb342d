"""Per-room settings: the operator's defaults from the file, overridden by each room's moderators.

Overrides are stored as JSON per (room, plugin, key) and always validated through the plugin's own
model, so a stored value can never make a plugin misbehave. Every change is written to
``core_audit`` in the same transaction as the change itself.

A field marked ``Field(..., json_schema_extra={"operator_only": True})`` can be set in the config
file only, never from the chat (the admin plugin's own ``enabled``, the bot's send pacing).
"""

from __future__ import annotations

import enum
import json
import logging
import math
import time
import types
from datetime import datetime
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import (
    ValidationError,
)
from pydantic.fields import FieldInfo

from civicbot.config import describe_validation_error
from civicbot.policy.plugin_config import (
    LIMITS,
    ROOM,
    WEB,
    LimitsConfig,
    PluginConfig,
    RoomConfig,
    WebConfig,
    is_operator_only,
    members_of,
)
from civicbot.storage.database import Database

log = logging.getLogger(__name__)

MAX_VALUE_CHARS = 2_000  # a typed value longer than this is refused, not stored


class SettingError(ValueError):
    """A setting could not be changed; the message says what is accepted."""


class RoomSettings:
    """Reads and writes per-room overrides, caching the validated models."""

    def __init__(
        self,
        db: Database,
        defaults: dict[str, dict[str, Any]],
        models: dict[str, type[PluginConfig]],
    ):
        self._db = db
        self._defaults = defaults
        self.models: dict[str, type[PluginConfig]] = {
            ROOM: RoomConfig,
            LIMITS: LimitsConfig,
            WEB: WebConfig,
            **models,
        }
        self._cache: dict[tuple[str, str], PluginConfig] = {}
        # Bumped on every change: a read that raced a change must not cache what it read.
        self._generation = 0

    def invalidate(self) -> None:
        """Forget cached settings after their rows were changed behind our back."""
        self._generation += 1
        self._cache.clear()

    def _changed(self, room_id: str, plugin: str) -> None:
        self._generation += 1
        self._cache.pop((room_id, plugin), None)

    def default(self, plugin: str) -> PluginConfig:
        return self.models[plugin].model_validate(self._defaults.get(plugin, {}))

    async def overrides(self, room_id: str, plugin: str) -> dict[str, Any]:
        rows = await self._db.fetchall(
            "SELECT key, value FROM core_room_settings WHERE room_id = ? AND plugin = ?",
            (room_id, plugin),
        )
        found = {}
        for row in rows:
            try:
                found[row["key"]] = json.loads(row["value"])
            except ValueError:
                log.warning("ignoring unreadable setting %s.%s in %s", plugin, row["key"], room_id)
        return found

    async def get(self, room_id: str, plugin: str) -> PluginConfig:
        cached = self._cache.get((room_id, plugin))
        if cached is not None:
            return cached
        generation = self._generation
        overrides = await self.overrides(room_id, plugin)
        config = self._merge(plugin, overrides)
        if config is None:
            # Overrides an upgraded model no longer accepts: drop just those, keep the rest.
            config = self._merge_valid(room_id, plugin, overrides)
        if generation == self._generation:
            self._cache[(room_id, plugin)] = config
        return config

    def _merge(self, plugin: str, overrides: dict[str, Any]) -> PluginConfig | None:
        merged = {**self._defaults.get(plugin, {}), **overrides}
        try:
            return self.models[plugin].model_validate(merged)
        except ValidationError:
            return None

    def _merge_valid(self, room_id: str, plugin: str, overrides: dict[str, Any]) -> PluginConfig:
        kept = {
            key: value
            for key, value in overrides.items()
            if self._merge(plugin, {key: value}) is not None
        }
        log.warning(
            "ignoring %d stored %s setting(s) in %s that no longer validate",
            len(overrides) - len(kept),
            plugin,
            room_id,
        )
        return self._merge(plugin, kept) or self.default(plugin)

    def field(self, plugin: str, key: str) -> FieldInfo:
        """The model field for ``plugin.key``, or a :class:`SettingError` naming the choices."""
        model = self.models.get(plugin)
        if model is None:
            known = ", ".join(sorted(self.models))
            raise SettingError(f"There is no plugin called '{plugin}'. These are: {known}.")
        field = model.model_fields.get(key)
        if field is None:
            known = ", ".join(model.model_fields)
            raise SettingError(f"{plugin} has no setting called '{key}'. Its settings: {known}.")
        return field

    async def set(
        self,
        room_id: str,
        plugin: str,
        key: str,
        value: Any,
        actor: str,
        at: datetime | None = None,
    ) -> PluginConfig:
        """Validate ``key = value`` against the plugin's model, store it for the room and
        record who did it in the audit log."""
        field = self.field(plugin, key)
        if is_operator_only(field):
            raise SettingError(
                f"{plugin}.{key} can only be changed by whoever runs the bot, in its config file."
            )
        model = self.models[plugin]
        async with self._db.transaction():
            before = await self.get(room_id, plugin)
            overrides = await self.overrides(room_id, plugin)
            merged = {**self._defaults.get(plugin, {}), **overrides, key: value}
            try:
                config = model.model_validate(merged)
            except ValidationError as exc:
                problems = describe_validation_error(exc, prefix=plugin)
                raise SettingError("; ".join(problems)) from None
            stored = json.dumps(config.model_dump(mode="json")[key])
            if len(stored) > MAX_VALUE_CHARS:
                raise SettingError(f"That value is too long ({MAX_VALUE_CHARS} characters at most)")
            if key in overrides and overrides[key] == json.loads(stored):
                # Already so (or this very command replayed after a crash): nothing to record.
                return config
            stamp = _stamp(at)
            await self._db.execute(
                "INSERT INTO core_room_settings"
                " (room_id, plugin, key, value, changed_by, changed_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(room_id, plugin, key) DO UPDATE SET value = excluded.value,"
                " changed_by = excluded.changed_by, changed_at = excluded.changed_at",
                (room_id, plugin, key, stored, actor, stamp),
            )
            old, new = getattr(before, key), getattr(config, key)
            detail = f"{plugin}.{key} to {format_value(new)} (was {format_value(old)})"
            await write_audit(self._db, room_id, actor, "config.set", detail, stamp)
            self._changed(room_id, plugin)
        return config

    async def reset(
        self,
        room_id: str,
        plugin: str,
        key: str | None = None,
        actor: str | None = None,
        at: datetime | None = None,
    ) -> int:
        """Drop the room's override of ``plugin.key`` (of every key when None); returns how many
        were dropped. Audited when an ``actor`` is given."""
        async with self._db.transaction():
            before = await self.get(room_id, plugin) if plugin in self.models else None
            if key is not None and plugin in self.models:
                # What stays must still make sense together (moderator_level <= admin_level).
                left = await self.overrides(room_id, plugin)
                left.pop(key, None)
                try:
                    self.models[plugin].model_validate({**self._defaults.get(plugin, {}), **left})
                except ValidationError as exc:
                    problems = describe_validation_error(exc, prefix=plugin)
                    raise SettingError("; ".join(problems)) from None
            sql = "DELETE FROM core_room_settings WHERE room_id = ? AND plugin = ?"
            params: tuple[str, ...] = (room_id, plugin)
            if key is not None:
                sql, params = sql + " AND key = ?", (*params, key)
            removed = await self._db.execute_rowcount(sql, params)
            self._changed(room_id, plugin)
            if removed and actor is not None:
                if key is not None and before is not None:
                    now = getattr(await self.get(room_id, plugin), key)
                    detail = (
                        f"{plugin}.{key} back to {format_value(now)} "
                        f"(was {format_value(getattr(before, key))})"
                    )
                else:
                    detail = f"every {plugin} setting ({removed}) back to the defaults"
                await write_audit(self._db, room_id, actor, "config.reset", detail, _stamp(at))
        return removed


def _stamp(at: datetime | None) -> int:
    return int(at.timestamp()) if at is not None else int(time.time())


async def write_audit(
    db: Database, room_id: str, actor: str, action: str, detail: str, at: int | None = None
) -> None:
    """Record a configuration or role change (``at`` in seconds since the epoch, UTC)."""
    when = at if at is not None else int(time.time())
    sql = "INSERT INTO core_audit (room_id, actor, action, detail, at) VALUES (?, ?, ?, ?, ?)"
    await db.execute(sql, (room_id, actor, action, detail[:MAX_VALUE_CHARS], when))


# -- reading values typed in chat -------------------------------------------------------------
_NOT_JSON = object()


def parse_setting_value(raw: str, annotation: Any = None) -> Any:
    """Read a value typed in chat, guided by the setting's type when known.

    Text settings take the words as typed (quotes optional); others take JSON when it parses
    (``48``, ``true``, ``["a", "b"]``), ``yes``/``no``/``on``/``off`` for switches, and lists may
    be written ``a, b, c``. ``none`` clears a setting that may be empty."""
    raw = raw.strip()
    if len(raw) > MAX_VALUE_CHARS:
        raise SettingError(f"That value is too long ({MAX_VALUE_CHARS} characters at most).")
    lowered = raw.lower()
    if lowered in ("none", "null", "unset") and _optional(annotation):
        return None
    kind = _kind(annotation)
    if kind == "text":
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            value = _json(raw)
            if isinstance(value, str):
                return value
        return raw
    value = _json(raw)
    if value is _NOT_JSON:
        if lowered in ("yes", "on", "y"):
            return True
        if lowered in ("no", "off", "n"):
            return False
        if kind == "list":
            separator = "|" if "|" in raw else ","
            return [_json_or_text(part.strip()) for part in raw.split(separator) if part.strip()]
        return raw
    if kind == "list" and not isinstance(value, list):
        return [value]
    return value


def _json(raw: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(constant)  # NaN and Infinity are not values anyone means

    try:
        value = json.loads(raw, parse_constant=refuse)
    except (ValueError, RecursionError):
        return _NOT_JSON
    if isinstance(value, float) and not math.isfinite(value):
        return _NOT_JSON
    return value


def _json_or_text(raw: str) -> Any:
    value = _json(raw)
    return raw if value is _NOT_JSON else value


def _optional(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def _kind(annotation: Any) -> str:
    members = members_of(annotation)
    if len(members) != 1:
        return "other"
    tp = members[0]
    if tp is str or (isinstance(tp, type) and issubclass(tp, str)):
        return "text"
    if get_origin(tp) is Literal and all(isinstance(a, str) for a in get_args(tp)):
        return "text"
    if get_origin(tp) in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        return "list"
    return "other"


# -- describing settings to people -----------------------------------------------------------
def describe_field(field: FieldInfo) -> str:
    """What a setting accepts, in plain words: 'a whole number from 0 to 100'."""
    if field.description:
        return field.description
    parts = [describe_type(member) for member in members_of(field.annotation)]
    text = " or ".join(parts)
    bounds = _bounds(field)
    if bounds:
        text += f" {bounds}"
    if _optional(field.annotation):
        text += ", or none"
    return text


def describe_type(tp: Any) -> str:
    """One type in plain words: ``int`` is 'a whole number'."""
    origin = get_origin(tp)
    if tp is bool:
        return "on or off"
    if tp is int:
        return "a whole number"
    if tp is float:
        return "a number"
    if tp is str:
        return "some text"
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of: " + ", ".join(str(m.value) for m in tp)
    if origin in (list, tuple, set, frozenset):
        inner = get_args(tp)
        what = describe_type(inner[0]) if inner else "values"
        return f"a list (of {what}) separated by commas"
    if origin is dict:
        return 'pairs like {"name": value}'
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


_BOUND_WORDS = (("ge", "of at least"), ("gt", "above"), ("le", "at most"), ("lt", "below"))


def _bounds(field: FieldInfo) -> str:
    found = {}
    for item in field.metadata:
        for attr, _ in _BOUND_WORDS:
            if getattr(item, attr, None) is not None:
                found[attr] = format_value(getattr(item, attr))
    if "ge" in found and "le" in found:
        return f"from {found['ge']} to {found['le']}"
    return ", ".join(f"{words} {found[attr]}" for attr, words in _BOUND_WORDS if attr in found)


def format_value(value: Any) -> str:
    """A setting's value the way someone would type it back."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, str):
        return value if value.strip() else json.dumps(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if all(isinstance(v, str) and "," not in v and v.strip() for v in items) and items:
            return ", ".join(items)
        return json.dumps(items, default=str)
    if isinstance(value, dict):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


class RoomSettingsView:
    """What every plugin may read of the room settings (its own and other plugins'); changing
    them is for the plugin that runs rooms (see :class:`civicbot.core.context.RoomManagement`)."""

    def __init__(self, settings: RoomSettings):
        self._settings = settings

    @property
    def models(self) -> dict[str, type[PluginConfig]]:
        return dict(self._settings.models)

    def default(self, plugin: str) -> PluginConfig:
        return self._settings.default(plugin)

    async def get(self, room_id: str, plugin: str) -> PluginConfig:
        return await self._settings.get(room_id, plugin)

    async def overrides(self, room_id: str, plugin: str) -> dict[str, Any]:
        return await self._settings.overrides(room_id, plugin)

    def field(self, plugin: str, key: str) -> FieldInfo:
        return self._settings.field(plugin, key)
