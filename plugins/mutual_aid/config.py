"""The mutual_aid plugin's settings: ``[plugins.mutual_aid]`` in the file, overridable per room."""

from __future__ import annotations

from pydantic import Field

from civicbot.api import PluginConfig


class MutualAidConfig(PluginConfig):
    """Settings of the mutual aid plugin (bot-wide defaults; moderators may override per room)."""

    timebank: bool = Field(
        False, description="timebank mode: `!done N-42 2h` records hours given, `!hours` shows them"
    )
    daily_notifications: int = Field(
        3,
        ge=0,
        le=50,
        description=(
            "most 'a neighbour needs something you offered' messages one person gets a day: 0-50"
        ),
    )
    thanks_default: bool = Field(
        False,
        description="post a thank-you in the room when a need is done, unless the requester says",
    )
    accepts_private_needs: bool = Field(
        False,
        description=(
            "moderators mark the neighbourhood's room: needs sent by DM list it first, and a room"
            " made (or joined by the bot) in the last 7 days is offered only when marked"
        ),
    )
    expiry_days: int = Field(
        14, ge=1, le=90, description="days a post stays up when it names no expiry: 1 to 90"
    )
