"""The config base classes: what every plugin's settings model builds on, and the two sections
the core itself owns, ``room`` (the room's own settings) and ``limits`` (flood control).

Every key of a :class:`PluginConfig` may be set bot-wide (``[plugins.<name>]``, ``[limits]``) and
overridden per room by moderators with ``!config``, unless its field is marked
``Field(..., json_schema_extra={"operator_only": True})``: then only the config file sets it.
"""

from __future__ import annotations

import functools
import types
from typing import Any, Union, get_args, get_origin
from zoneinfo import ZoneInfo, available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonDict

from civicbot.policy.limits import DEFAULT_SEND_BURST, DEFAULT_SENDS_PER_SECOND, FloodLimits
from civicbot.policy.roles import DEFAULT_ROLE_LEVELS, Role

ROOM = "room"  # the pseudo-plugin that holds room-wide settings
LIMITS = "limits"  # the pseudo-plugin that holds the flood limits the core enforces
WEB = "web"  # the pseudo-plugin of the public web pages (civicbot.web)
CORE_SECTIONS = (ROOM, LIMITS, WEB)
OPERATOR_ONLY = "operator_only"
# Field(..., json_schema_extra=OPERATOR): set in the config file only, never from the chat.
OPERATOR: JsonDict = {OPERATOR_ONLY: True}


class PluginConfig(BaseModel):
    """Base for a plugin's settings. Every key may be set bot-wide in ``[plugins.<name>]`` and
    overridden per room by moderators."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = True
    # The operator's word that the bot may start without this plugin when it cannot load (it
    # is then left out, with an ERROR line at every start). Rooms can't change it.
    required: bool = Field(
        True,
        description="refuse to start when this plugin cannot load (false: start without it)",
        json_schema_extra=OPERATOR,
    )


@functools.cache
def _place_zones() -> frozenset[str]:
    odd = ("posix/", "right/")
    return frozenset(
        zone
        for zone in available_timezones()
        if not zone.startswith(odd) and zone not in ("Factory", "localtime", "posixrules")
    )


@functools.cache
def _zones_by_key() -> dict[str, str]:
    return {zone.lower(): zone for zone in _place_zones()}


def zone_name(value: str) -> str:
    """The IANA time zone ``value`` names, spelt as the tz database spells it, however it was
    typed: ``europe/warsaw`` and ``Europe/Warsaw`` are one zone, ``new york`` is ``new_york``,
    ``utc``, ``gmt`` and ``z`` are UTC. Every zone a person or the config gives is read here,
    so a name accepted in one place is accepted everywhere. Raises a ValueError saying what to
    write.

    The tz database also holds "Factory", "localtime", "posix/…" and "right/…" entries that
    load but break date parsing or mean the server's own zone; they are refused."""
    cleaned = "_".join(value.strip().split())
    name = _zones_by_key().get(cleaned.lower())
    if name is None and cleaned.upper() in ("UTC", "GMT", "Z"):
        name = "UTC"
    if name is None:
        raise ValueError(
            "expected an IANA time zone name like 'Europe/London' or 'America/New_York'"
        )
    ZoneInfo(name)
    return name


def check_zone(value: str) -> str:
    """:func:`zone_name`, for a setting's validator: the zone's name as the tz database has it."""
    return zone_name(value)


def members_of(annotation: Any) -> tuple[Any, ...]:
    """The types of a union annotation without ``None`` (or the annotation itself)."""
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(a for a in get_args(annotation) if a is not type(None))
    return (annotation,)


def is_operator_only(field: FieldInfo) -> bool:
    """Marked so, or a secret (which must never be typed into, or shown in, a room)."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and extra.get(OPERATOR_ONLY):
        return True
    return any(member in (SecretStr, SecretBytes) for member in members_of(field.annotation))


class RoomConfig(PluginConfig):
    """Settings of the room itself rather than of one plugin."""

    enabled: bool = Field(True, json_schema_extra=OPERATOR)  # a room is always on
    timezone: str | None = Field(
        None,
        description="a time zone like Europe/London, or none for the bot's default",
        examples=["Europe/London"],
    )
    moderator_level: int = Field(DEFAULT_ROLE_LEVELS["moderator"], ge=0, le=100)
    admin_level: int = Field(DEFAULT_ROLE_LEVELS["admin"], ge=0, le=100)
    unknown_commands: bool = Field(
        True,
        description=(
            "answer a command I don't know with a pointer to help (false where another bot "
            "in the room uses the same prefix)"
        ),
    )
    # Power level for each plugin role, e.g. {"councillor": 50}; unset roles need moderator level.
    role_levels: dict[str, int] = Field(
        default_factory=dict,
        description='the power level (0 to 100) each role needs, like {"councillor": 30}',
        examples=[{"councillor": 30}],
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)

    @field_validator("role_levels")
    @classmethod
    def _levels(cls, value: dict[str, int]) -> dict[str, int]:
        for role, level in value.items():
            if not (0 <= level <= 100):
                raise ValueError(f"the level for '{role}' should be from 0 to 100")
            if role.lower() in (Role.MODERATOR, Role.ADMIN):
                # One place for each, so !config shows the level that really applies.
                raise ValueError(f"set room.{role.lower()}_level instead")
        return {role.lower(): level for role, level in value.items()}

    @model_validator(mode="after")
    def _admins_are_moderators(self) -> RoomConfig:
        if self.moderator_level > self.admin_level:
            raise ValueError(
                f"moderator_level ({self.moderator_level}) can't be above admin_level "
                f"({self.admin_level}): admins must count as moderators"
            )
        return self


class LimitsConfig(PluginConfig):
    """Flood control, enforced by the core for every plugin. Rooms may change the first five;
    the rest are the operator's."""

    enabled: bool = Field(True, json_schema_extra=OPERATOR)
    person_burst: int = Field(
        8,
        ge=0,
        le=1000,
        description="a whole number: commands one person may send at once (0: no limit)",
    )
    person_per_minute: float = Field(20.0, ge=1, le=6000, allow_inf_nan=False)
    room_burst: int = Field(
        30,
        ge=0,
        le=10000,
        description="a whole number: commands a whole room may send at once (0: no limit)",
    )
    room_per_minute: float = Field(60.0, ge=1, le=60000, allow_inf_nan=False)
    cooldown_seconds: int = Field(60, ge=1, le=86400)
    # One person across all rooms together; 0 switches it off.
    everywhere_burst: int = Field(24, ge=0, le=100000, json_schema_extra=OPERATOR)
    everywhere_per_minute: float = Field(
        60.0, ge=1, le=600000, allow_inf_nan=False, json_schema_extra=OPERATOR
    )
    send_burst: int = Field(DEFAULT_SEND_BURST, ge=1, le=10000, json_schema_extra=OPERATOR)
    sends_per_second: float = Field(
        DEFAULT_SENDS_PER_SECOND, ge=0, le=10000, allow_inf_nan=False, json_schema_extra=OPERATOR
    )


class WebConfig(PluginConfig):
    """The public web pages, calendar feeds and noticeboard (:mod:`civicbot.web`). The server
    and its address are the operator's (``[web]`` in the file); each room's moderators decide
    whether their room has a page (``!config web.public true``) and whether it shows names."""

    enabled: bool = Field(True, json_schema_extra=OPERATOR)
    # Off unless both are set: where the bot listens, and the address people reach it at.
    listen: str = Field("", json_schema_extra=OPERATOR)
    public_url: str = Field("", json_schema_extra=OPERATOR)
    # Requests one client (by IP address) may make at once, refilled at requests_per_minute.
    requests_burst: int = Field(60, ge=1, le=100000, json_schema_extra=OPERATOR)
    requests_per_minute: float = Field(
        120.0, ge=1, le=1000000, allow_inf_nan=False, json_schema_extra=OPERATOR
    )
    # Seconds browsers and proxies may keep a page (Cache-Control max-age).
    cache_seconds: int = Field(60, ge=0, le=86400, json_schema_extra=OPERATOR)
    # Trust X-Forwarded-For from a reverse proxy on loopback, to limit each real client.
    trust_proxy: bool = Field(True, json_schema_extra=OPERATOR)
    # The headless Chromium that prints !noticeboard's PDF ("" finds chromium on the PATH).
    chromium: str = Field("", json_schema_extra=OPERATOR)
    # Per room: the room has a public page, a calendar feed and a noticeboard.
    public: bool = Field(
        False, description="true to publish this room's page, calendar feed and noticeboard"
    )
    # Per room: show the display names of people who posted publicly (false: no names at all).
    names: bool = Field(True, description="false to show no names on the public page")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if not value:
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError('expected host:port, like "127.0.0.1:8090"')
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError('expected the address people open, like "https://civic.example.org"')
        return value.rstrip("/")

    @property
    def serving(self) -> bool:
        """Whether the operator switched the web server on (both keys set)."""
        return bool(self.listen and self.public_url)


# Keys that were the admin plugin's until the core took over flood control.
MOVED_TO_LIMITS = frozenset(LimitsConfig.model_fields) - {"enabled"}


def flood_limits(config: LimitsConfig) -> FloodLimits:
    """The limits a room's settings ask for, in the form the flood guard takes."""
    return FloodLimits(
        person_burst=config.person_burst,
        person_per_minute=config.person_per_minute,
        room_burst=config.room_burst,
        room_per_minute=config.room_per_minute,
        cooldown_seconds=config.cooldown_seconds,
        everywhere_burst=config.everywhere_burst,
        everywhere_per_minute=config.everywhere_per_minute,
    )
