"""The polls plugin's settings: ``[plugins.polls]`` in the file, overridable per room."""

from __future__ import annotations

from pydantic import Field

from civicbot.api import PluginConfig


class PollsConfig(PluginConfig):
    """Settings of the polls plugin (bot-wide defaults; moderators may override per room)."""

    reminder_hours: int = Field(
        24,
        ge=0,
        le=24 * 30,
        description="hours before a poll closes to remind the room: 0 (off) to 720",
    )
    default_duration_days: int = Field(
        7,
        ge=1,
        le=365,
        description="days a poll stays open when no closing time is given: 1 to 365",
    )
    create_level: int = Field(
        0,
        ge=0,
        le=100,
        description=(
            "power level needed to start a poll, 0 (everyone) to 100; moderators always may"
        ),
    )
    min_secret_voters: int = Field(
        3,
        ge=1,
        le=1000,
        description="fewer secret voters than this and only the turnout is published: 1 to 1000",
    )
