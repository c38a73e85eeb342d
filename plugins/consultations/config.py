"""The consultations plugin's settings: ``[plugins.consultations]``, overridable per room."""

from __future__ import annotations

from pydantic import Field

from civicbot.plugin import PluginConfig


class ConsultationsConfig(PluginConfig):
    """Settings of the consultations plugin (bot-wide defaults; rooms may override them)."""

    respond_within_days: int = Field(
        28,
        ge=0,
        le=365,
        description=(
            "days after the close before the room is told a consultation still has no "
            "response: 0 (at the close) to 365"
        ),
    )
    anonymous_minimum: int = Field(
        3,
        ge=1,
        le=100,
        description=(
            "fewer anonymous respondents than this and the summary gives the turnout only: 1 to 100"
        ),
    )
