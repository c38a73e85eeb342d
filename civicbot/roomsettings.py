"""Per-room settings: the operator's defaults from the file, overridden by each room's moderators.

Overrides are stored as JSON per (room, plugin, key) and always validated through the plugin's own
model, so a stored value can never make a plugin misbehave.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from civicbot.config import describe_validation_error
from civicbot.permissions import DEFAULT_ROLE_LEVELS
from civicbot.plugin import PluginConfig
from civicbot.storage import Database

ROOM = "room"  # the pseudo-plugin that holds room-wide settings


class RoomConfig(PluginConfig):
    """Settings of the room itself rather than of one plugin."""

    timezone: str | None = None  # None: the bot's default time zone
    moderator_level: int = Field(DEFAULT_ROLE_LEVELS["moderator"], ge=0, le=100)
    admin_level: int = Field(DEFAULT_ROLE_LEVELS["admin"], ge=0, le=100)
    # Power level for each plugin role, e.g. {"councillor": 50}; unset roles need moderator level.
    role_levels: dict[str, int] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from civicbot.config import BotSettings

        return BotSettings._zone(value)


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
        self.models: dict[str, type[PluginConfig]] = {ROOM: RoomConfig, **models}
        self._cache: dict[tuple[str, str], PluginConfig] = {}

    def default(self, plugin: str) -> PluginConfig:
        return self.models[plugin].model_validate(self._defaults.get(plugin, {}))

    async def overrides(self, room_id: str, plugin: str) -> dict[str, Any]:
        rows = await self._db.fetchall(
            "SELECT key, value FROM core_room_settings WHERE room_id = ? AND plugin = ?",
            (room_id, plugin),
        )
        return {row["key"]: json.loads(row["value"]) for row in rows}

    async def get(self, room_id: str, plugin: str) -> PluginConfig:
        cached = self._cache.get((room_id, plugin))
        if cached is not None:
            return cached
        merged = {**self._defaults.get(plugin, {}), **await self.overrides(room_id, plugin)}
        try:
            config = self.models[plugin].model_validate(merged)
        except ValidationError:
            # A stored override that an upgraded model no longer accepts: fall back to defaults
            # rather than break the room.
            config = self.default(plugin)
        self._cache[(room_id, plugin)] = config
        return config

    async def set(
        self, room_id: str, plugin: str, key: str, value: Any, actor: str
    ) -> PluginConfig:
        """Validate ``key = value`` against the plugin's model and store it for the room."""
        model = self.models.get(plugin)
        if model is None:
            raise SettingError(f"there is no plugin called '{plugin}'")
        if key not in model.model_fields:
            known = ", ".join(k for k in model.model_fields)
            raise SettingError(f"{plugin} has no setting '{key}'. Its settings: {known}")
        merged = {
            **self._defaults.get(plugin, {}),
            **await self.overrides(room_id, plugin),
            key: value,
        }
        try:
            config = model.model_validate(merged)
        except ValidationError as exc:
            raise SettingError("; ".join(describe_validation_error(exc, prefix=plugin))) from None
        stored = json.dumps(getattr(config, key), default=str)
        await self._db.execute(
            "INSERT INTO core_room_settings (room_id, plugin, key, value, changed_by, changed_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(room_id, plugin, key) DO UPDATE SET"
            " value = excluded.value, changed_by = excluded.changed_by,"
            " changed_at = excluded.changed_at",
            (room_id, plugin, key, stored, actor, int(time.time())),
        )
        self._cache.pop((room_id, plugin), None)
        return config

    async def reset(self, room_id: str, plugin: str, key: str) -> bool:
        removed = await self._db.execute_rowcount(
            "DELETE FROM core_room_settings WHERE room_id = ? AND plugin = ? AND key = ?",
            (room_id, plugin, key),
        )
        self._cache.pop((room_id, plugin), None)
        return removed > 0


def parse_setting_value(raw: str) -> Any:
    """Read a value typed in chat: JSON when it parses (``48``, ``true``, ``["a"]``), else text."""
    raw = raw.strip()
    try:
        return json.loads(raw)
    except ValueError:
        lowered = raw.lower()
        if lowered in ("yes", "on"):
            return True
        if lowered in ("no", "off"):
            return False
        return raw


def describe_model(model: type[BaseModel]) -> dict[str, str]:
    """Each setting's type, for replies that name the accepted values."""
    return {
        name: str(field.annotation).replace("typing.", "")
        for name, field in model.model_fields.items()
    }
