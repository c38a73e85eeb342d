"""Who may do what: power levels (room version 12 creators included) plus granted roles."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from civicbot.policy.plugin_config import ROOM, RoomConfig
from civicbot.policy.roles import DEFAULT_ROLE_LEVELS, Role
from civicbot.policy.room_settings import RoomSettings
from civicbot.storage.database import Database
from civicbot.transport import Transport, TransportError

CREATOR_LEVEL = math.inf
MAX_PLAIN_MENTIONS = 10  # more than this pings "many people": only for those who may ping @room


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
    if level >= levels[Role.ADMIN]:
        return True  # an admin by power level may do everything a moderator or any role may
    if Role.MODERATOR in granted:
        # A granted moderator counts as someone at the moderator level, so it stands in for
        # plugin roles exactly where a moderator by power level would.
        level = max(level, levels[Role.MODERATOR])
    needed = levels.get(role, levels[Role.MODERATOR])
    return level >= needed


# -- who may make the bot ping whom ---------------------------------------------------------
_ROOM_PING = re.compile(r"@(?=room)", re.IGNORECASE)
_USER_ID = re.compile(r"@[A-Za-z0-9._=\-/+]+:[A-Za-z0-9.\-\[\]]+(?::\d+)?")
WORD_JOINER = "\u2060"


def defuse_room_ping(text: str) -> str:
    """Keep '@room' readable but stop clients that still read the body (any letter case)
    treating it as a whole-room ping."""
    return _ROOM_PING.sub("@" + WORD_JOINER, text)


def defuse_user_ids(text: str) -> str:
    """Keep Matrix ids readable but stop body-matching clients pinging their owners."""
    return _USER_ID.sub(lambda m: "@" + WORD_JOINER + m.group()[1:], text)


def user_ids_in(text: str) -> set[str]:
    return set(_USER_ID.findall(text))


def restrict_mentions(
    text: str,
    html: str | None,
    mentions: tuple[str, ...],
    mention_room: bool,
    may_ping_room: bool,
) -> tuple[str, str | None, tuple[str, ...], bool]:
    """What a message may ping when asked for by someone who may (or may not) ping the room.

    Those who may not lose ``@room`` (the flag and the word, in any letter case) and, when the
    message would reach more than :data:`MAX_PLAIN_MENTIONS` people, every mention."""
    if may_ping_room:
        return text, html, mentions, mention_room
    text = defuse_room_ping(text)
    html = defuse_room_ping(html) if html else html
    if len(set(mentions) | user_ids_in(text)) > MAX_PLAIN_MENTIONS:
        mentions = ()
        text = defuse_user_ids(text)
    return text, html, mentions, False


class Permissions:
    """Resolves roles from power levels (cached per room until they change) and granted roles."""

    def __init__(self, transport: Transport, db: Database, room_settings: RoomSettings):
        self._transport = transport
        self._db = db
        self._room_settings = room_settings
        self._power: dict[str, PowerLevels] = {}
        self._generation: dict[str, int] = {}

    def forget_room(self, room_id: str) -> None:
        """Drop cached power levels (called when an ``m.room.power_levels`` event arrives)."""
        self._power.pop(room_id, None)
        self._generation[room_id] = self._generation.get(room_id, 0) + 1

    async def power_levels(self, room_id: str) -> PowerLevels:
        cached = self._power.get(room_id)
        if cached is None:
            generation = self._generation.get(room_id, 0)
            content = await self._transport.state_event(room_id, "m.room.power_levels")
            create = await self._transport.create_event(room_id)
            cached = PowerLevels.from_state(content, create)
            if generation == self._generation.get(room_id, 0):  # no change arrived meanwhile
                self._power[room_id] = cached
        return cached

    async def granted(self, room_id: str, user_id: str) -> set[str]:
        rows = await self._db.fetchall(
            "SELECT role FROM core_roles WHERE room_id = ? AND user_id = ?", (room_id, user_id)
        )
        return {row["role"] for row in rows}

    async def role_levels(self, room_id: str) -> dict[str, int]:
        room = await self._room_settings.get(room_id, ROOM)
        assert isinstance(room, RoomConfig)
        return {
            Role.MODERATOR: room.moderator_level,
            Role.ADMIN: room.admin_level,
            **room.role_levels,
        }

    async def joined(self, room_id: str, user_id: str) -> bool:
        """Whether ``user_id`` is joined to ``room_id`` now. A power level or a granted role
        counts only while its holder is in the room: a banned or departed moderator keeps
        their level in ``m.room.power_levels`` (and their granted row) but must not go on
        moderating, by a DM or anywhere else."""
        try:
            return user_id in await self._transport.joined_members(room_id)
        except TransportError:
            return False  # unknown now: no powers, the safe side

    async def has(self, room_id: str, user_id: str, role: str) -> bool:
        if role == Role.EVERYONE:
            return True
        if not await self.joined(room_id, user_id):
            return False
        levels = await self.power_levels(room_id)
        return role_satisfied(
            role,
            levels.level(user_id),
            await self.granted(room_id, user_id),
            await self.role_levels(room_id),
        )

    async def may_ping_room(self, room_id: str, user_id: str | None) -> bool:
        """Whether a message sent for ``user_id`` may notify the whole room (None: nobody)."""
        if user_id is None or not await self.joined(room_id, user_id):
            return False
        return (await self.power_levels(room_id)).can_notify_room(user_id)

    async def describe(self, room_id: str, role: str) -> str:
        """'moderators (power level 50 or more)' — for polite refusals."""
        levels = {**await self.role_levels(room_id)}
        needed = levels.get(role, levels[Role.MODERATOR])
        plural = {"everyone": "everyone", "admin": "admins"}.get(role, f"{role}s")
        return f"{plural} (power level {needed} or more, or a granted '{role}' role)"
