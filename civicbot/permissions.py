"""Who may do what: power levels (room version 12 creators included) plus granted roles."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    """Built-in roles. Plugins may declare more (``councillor``, ``organiser``) as plain strings."""

    EVERYONE = "everyone"
    MODERATOR = "moderator"
    ADMIN = "admin"


DEFAULT_ROLE_LEVELS: dict[str, int] = {Role.MODERATOR: 50, Role.ADMIN: 100}
CREATOR_LEVEL = math.inf


@dataclass(frozen=True)
class PowerLevels:
    """A room's ``m.room.power_levels`` read the way the spec (and room v12) says."""

    users: dict[str, int] = field(default_factory=dict)
    users_default: int = 0
    events: dict[str, int] = field(default_factory=dict)
    events_default: int = 0
    state_default: int = 50
    redact: int = 50
    notifications_room: int = 50
    creators: frozenset[str] = frozenset()

    @classmethod
    def from_state(
        cls, content: dict[str, Any] | None, create_event: dict[str, Any] | None = None
    ) -> PowerLevels:
        content = content or {}
        creators = _creators(create_event)
        users = {u: _int(v) for u, v in (content.get("users") or {}).items()}
        if not content and create_event:
            # No power levels event yet: the spec gives the creator 100.
            users = {c: 100 for c in creators}
        notifications = content.get("notifications") or {}
        return cls(
            users=users,
            users_default=_int(content.get("users_default", 0)),
            events={k: _int(v) for k, v in (content.get("events") or {}).items()},
            events_default=_int(content.get("events_default", 0)),
            state_default=_int(content.get("state_default", 50)),
            redact=_int(content.get("redact", 50)),
            notifications_room=_int(notifications.get("room", 50)),
            creators=frozenset(creators) if _creators_are_supreme(create_event) else frozenset(),
        )

    def level(self, user_id: str) -> float:
        """The user's power; room v12 creators outrank everyone (infinite)."""
        if user_id in self.creators:
            return CREATOR_LEVEL
        return self.users.get(user_id, self.users_default)

    def can_redact(self, user_id: str) -> bool:
        return self.level(user_id) >= self.redact

    def can_notify_room(self, user_id: str) -> bool:
        return self.level(user_id) >= self.notifications_room


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _creators(create_event: dict[str, Any] | None) -> list[str]:
    if not create_event:
        return []
    content = create_event.get("content") or {}
    creators = [create_event.get("sender") or content.get("creator") or ""]
    extra = content.get("additional_creators") or []
    if isinstance(extra, list):
        creators.extend(str(user) for user in extra)
    return [c for c in creators if c]


def _creators_are_supreme(create_event: dict[str, Any] | None) -> bool:
    """Room version 12 (MSC4289) and later give creators unlimited power."""
    if not create_event:
        return False
    version = str((create_event.get("content") or {}).get("room_version", "1"))
    if version == "org.matrix.hydra.11":
        return True
    return version.isdigit() and int(version) >= 12


def role_satisfied(role: str, level: float, granted: set[str], role_levels: dict[str, int]) -> bool:
    """True when someone of power ``level`` holding the ``granted`` roles may act as ``role``.

    ``role_levels`` are the room's thresholds; a plugin role with no threshold of its own needs
    the moderator level, so moderators can always stand in. Admins may do everything."""
    if role == Role.EVERYONE or role in granted or Role.ADMIN in granted:
        return True
    levels = {**DEFAULT_ROLE_LEVELS, **role_levels}
    needed = levels.get(role, levels[Role.MODERATOR])
    return level >= needed
