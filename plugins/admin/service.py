"""The admin plugin's logic, with no Matrix in it: its settings, setting paths, what to show."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args, get_origin

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

from civicbot.api import (
    FORGOTTEN,
    OPERATOR,
    ROOM,
    AuditEntry,
    PluginConfig,
    Role,
    SettingError,
    describe_field,
    format_value,
    is_operator_only,
)

# Who counts as a moderator (or admin) is itself a setting: only admins may change it.
PERMISSION_KEYS = {(ROOM, "moderator_level"), (ROOM, "admin_level"), (ROOM, "role_levels")}
ADMIN_ONLY_ROLES = {Role.MODERATOR.value, Role.ADMIN.value}


class AdminConfig(PluginConfig):
    """The admin plugin has no settings of its own (flood limits are the core's ``limits``)."""

    # Moderators can never switch the admin plugin off from the chat (nobody could switch
    # it back on).
    enabled: bool = Field(True, json_schema_extra=OPERATOR)


# -- setting paths -------------------------------------------------------------------------
@dataclass(frozen=True)
class SettingPath:
    """``polls.reminder_hours``, or ``room.role_levels.councillor`` for one entry of a dict."""

    plugin: str
    key: str | None = None
    entry: str | None = None

    def __str__(self) -> str:
        return ".".join(part for part in (self.plugin, self.key, self.entry) if part)

    @property
    def needs_admin(self) -> bool:
        return (self.plugin, self.key) in PERMISSION_KEYS


def normalise(word: str) -> str:
    return word.strip().strip(".").lower().replace("-", "_")


def parse_setting_path(text: str, models: dict[str, type[BaseModel]]) -> SettingPath:
    """Read ``plugin``, ``plugin.key`` or ``plugin.key.entry``; unknown names get suggestions."""
    parts = [normalise(part) for part in text.split(".", 2)]
    plugin = parts[0]
    if plugin not in models:
        raise SettingError(unknown_name(f"plugin called '{plugin}'", plugin, sorted(models)))
    if len(parts) == 1 or not parts[1]:
        return SettingPath(plugin)
    key, fields = parts[1], models[plugin].model_fields
    if key not in fields:
        raise SettingError(unknown_name(f"setting '{plugin}.{key}'", key, list(fields), plugin))
    entry = parts[2].strip() if len(parts) > 2 else None
    if entry is not None and get_origin(fields[key].annotation) is not dict:
        raise SettingError(f"{plugin}.{key} is a single value; leave out '.{entry}'.")
    return SettingPath(plugin, key, entry or None)


def unknown_name(what: str, word: str, known: list[str], owner: str = "") -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    hint = f" Did you mean {owner + '.' if owner else ''}{close[0]}?" if close else ""
    listed = ", ".join(known)
    return f"There's no {what}.{hint} {'Its settings' if owner else 'These exist'}: {listed}."


def entry_annotation(model: type[BaseModel], key: str) -> Any:
    """The value type of one entry of a dict setting (``int`` for role_levels)."""
    args = get_args(model.model_fields[key].annotation)
    return args[1] if len(args) == 2 else None


# -- what to show --------------------------------------------------------------------------
@dataclass(frozen=True)
class SettingRow:
    key: str
    value: str
    default: str
    changed: bool  # overridden in this room
    accepts: str
    operator_only: bool
    example: str


def setting_rows(
    model: type[BaseModel], current: BaseModel, default: BaseModel, overridden: set[str]
) -> list[SettingRow]:
    return [
        SettingRow(
            key=name,
            value=format_value(getattr(current, name)),
            default=format_value(getattr(default, name)),
            changed=name in overridden,
            accepts=describe_field(field),
            operator_only=is_operator_only(field),
            example=_example(field, getattr(current, name), getattr(default, name)),
        )
        for name, field in model.model_fields.items()
    ]


def _example(field: FieldInfo, current: Any, default: Any) -> str:
    if field.examples:
        return format_value(field.examples[0])
    if isinstance(current, bool):
        return format_value(not current)
    text = format_value(default)
    return text if text not in ("", "none", '""', "{}", "[]") else "…"


_VERBS = {
    "config.set": "set",
    "config.reset": "reset",
    "role.grant": "granted",
    "role.revoke": "revoked",
}


def audit_line(entry: AuditEntry) -> str:
    """``Mon 23 Nov 09:00 UTC  @mod:hs set polls.reminder_hours to 48 (was 24)``"""
    who = "someone who has since asked to be forgotten" if entry.actor == FORGOTTEN else entry.actor
    verb = _VERBS.get(entry.action, entry.action)
    return f"{format_utc(entry.at)}  {who} {verb} {entry.detail}"


def format_utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%a %d %b %Y %H:%M UTC")
