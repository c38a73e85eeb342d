"""The meetings plugin's settings: ``[plugins.meetings]`` in the file, overridable per room."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field, field_validator

from civicbot.api import DateError, PluginConfig, parse_duration

MIN_OFFSET = timedelta(seconds=10)
MAX_OFFSET = timedelta(days=14)
MAX_OFFSETS = 5


class MeetingsConfig(PluginConfig):
    """Settings of the meetings plugin (bot-wide defaults; moderators may override per room)."""

    reminders: list[str] = Field(
        default_factory=lambda: ["24h", "1h"],
        description=(
            "how long before a meeting to remind the room and those going, e.g. 24h, 1h, 30m "
            "(up to 5, each 10 seconds to 14 days; empty = no reminders)"
        ),
    )
    table_names: int = Field(
        8,
        ge=0,
        le=50,
        description="how many names the availability table shows per time (0 = counts only)",
    )

    @field_validator("reminders", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # "!config meetings.reminders 24h, 1h" arrives as one string.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("reminders")
    @classmethod
    def _readable(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_OFFSETS:
            raise ValueError(f"at most {MAX_OFFSETS} reminders")
        for text in value:
            try:
                offset = parse_duration(text)
            except DateError as exc:
                raise ValueError(str(exc)) from None
            if offset is None or not MIN_OFFSET <= offset <= MAX_OFFSET:
                raise ValueError(f"'{text}' is not a time from 10s to 14d, like 24h or 30m")
        return value

    @property
    def offsets(self) -> tuple[timedelta, ...]:
        """The reminder offsets, longest first, without repeats."""
        found = {parse_duration(text) for text in self.reminders}
        return tuple(sorted((o for o in found if o is not None), reverse=True))
