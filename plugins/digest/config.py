"""The digest plugin's settings: ``[plugins.digest]`` in the file, overridable per room."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from civicbot.api import OPERATOR, PluginConfig

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
EMPTY_WEEK = ("line", "nothing")
_TIME = re.compile(r"^([01]?\d|2[0-3])[:.h]?([0-5]\d)$")


def parse_clock(text: str) -> tuple[int, int]:
    """``18:00``, ``18.00``, ``1800``, ``9:30`` → (hour, minute); ValueError saying what to type."""
    found = _TIME.match(text.strip().lower())
    if not found:
        raise ValueError("expected a time of day like 18:00 or 09:30")
    return int(found.group(1)), int(found.group(2))


class DigestConfig(PluginConfig):
    """Settings of the digest plugin (bot-wide defaults; moderators may override per room)."""

    day: str = Field("sunday", description="the day the weekly digest is posted, like sunday")
    time: str = Field("18:00", description="the time of day it is posted (room's zone), like 18:00")
    empty_week: str = Field(
        "line",
        description="a week with nothing to report: 'line' (one short line) or 'nothing'",
    )
    threads: int = Field(3, ge=0, le=10, description="how many of the busiest threads to list")
    template_dir: str | None = Field(
        None,
        description="a directory of your own digest templates (digest.txt/.html, …)",
        json_schema_extra=OPERATOR,
    )
    rollout_per_second: float = Field(
        8.0,
        gt=0,
        le=1000,
        allow_inf_nan=False,
        description="digests posted per second when many rooms are due at once (all rooms)",
        json_schema_extra=OPERATOR,
    )

    check_every_seconds: int = Field(
        60,
        ge=1,
        le=3600,
        description="how often to look for digests that came due (a digest is at most this late)",
        json_schema_extra=OPERATOR,
    )

    @field_validator("day")
    @classmethod
    def _day(cls, value: str) -> str:
        word = value.strip().lower()
        for day in DAYS:
            if len(word) >= 3 and day.startswith(word):
                return day
        raise ValueError("expected a day of the week, like sunday or mon")

    @field_validator("time")
    @classmethod
    def _time(cls, value: str) -> str:
        hour, minute = parse_clock(value)
        return f"{hour:02d}:{minute:02d}"

    @field_validator("empty_week")
    @classmethod
    def _empty(cls, value: str) -> str:
        word = value.strip().lower()
        if word not in EMPTY_WEEK:
            raise ValueError("expected 'line' (post one short line) or 'nothing'")
        return word

    @property
    def weekday(self) -> int:
        """Monday is 0, as :meth:`datetime.weekday` counts."""
        return DAYS.index(self.day)

    @property
    def clock(self) -> tuple[int, int]:
        return parse_clock(self.time)
