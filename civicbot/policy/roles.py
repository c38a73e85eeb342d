"""The built-in roles and the power levels they need by default."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Built-in roles. Plugins may declare more (``councillor``, ``organiser``) as plain strings."""

    EVERYONE = "everyone"
    MODERATOR = "moderator"
    ADMIN = "admin"


DEFAULT_ROLE_LEVELS: dict[str, int] = {Role.MODERATOR: 50, Role.ADMIN: 100}

__all__ = ["DEFAULT_ROLE_LEVELS", "Role"]
