"""The consultations plugin's settings: ``[plugins.consultations]``, overridable per room."""

from __future__ import annotations

from pydantic import Field

from civicbot.api import PluginConfig


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
    counts_minimum: int = Field(
        3,
        ge=1,
        le=100,
        description=(
            "a private or anonymous consultation with fewer respondents gets a summary "
            "with the turnout only: 1 to 100"
        ),
    )
