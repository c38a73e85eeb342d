"""The core's flood control: one gate every command passes, and the pacing of the bot's sends.

Limits come from the ``limits`` settings (operator defaults in ``[limits]``, rooms may override
the first five with ``!config limits.<key>``). Someone over the limit gets one polite notice,
then silence for the cool-down. Moderators are never held back by the room's bucket, and a
moderator's own admin commands always pass, so no setting can lock out the people who would
change it back.
"""

from __future__ import annotations

from typing import cast

from civicbot.core.events import Event
from civicbot.policy.limits import (
    ALLOWED,
    FloodGuard,
    FloodLimits,
    SendPacer,
    Verdict,
    flood_notice,
)
from civicbot.policy.permissions import Permissions
from civicbot.policy.plugin_config import LIMITS, LimitsConfig, flood_limits
from civicbot.policy.roles import Role
from civicbot.policy.room_settings import RoomSettings
from civicbot.scheduling.clock import Clock

# Commands of this plugin are how moderators change the limits: they always pass for them.
ADMIN_PLUGIN = "admin"


class FloodControl:
    def __init__(
        self,
        room_settings: RoomSettings,
        permissions: Permissions,
        clock: Clock,
        defaults: LimitsConfig,
        prefix: str,
    ):
        self._room_settings = room_settings
        self._permissions = permissions
        self._prefix = prefix
        self.guard = FloodGuard(self._limits, self._exempt, clock.monotonic)
        self.pacer = SendPacer(
            defaults.send_burst, defaults.sends_per_second, clock=clock.monotonic, sleep=clock.sleep
        )

    async def _limits(self, room_id: str) -> FloodLimits:
        config = await self._room_settings.get(room_id, LIMITS)
        return flood_limits(cast(LimitsConfig, config))

    async def _exempt(self, room_id: str, user_id: str) -> bool:
        return await self._permissions.has(room_id, user_id, Role.MODERATOR)

    async def gate(self, event: Event, plugin: str) -> str | None:
        """Before every command: None lets it through; a message refuses with that (the one
        polite notice); "" drops it silently (the sender is cooling down)."""
        if plugin == ADMIN_PLUGIN and await self._exempt(event.room_id, event.sender):
            self.guard.remember(event.event_id, ALLOWED)  # and so are its replies
            return None
        decision = await self.guard.admit(event.room_id, event.sender, event.event_id)
        if decision.allowed:
            return None
        if decision.verdict is Verdict.NOTICE:
            self.guard.remember(event.event_id, ALLOWED)  # so the notice itself goes out
            return flood_notice(decision, self._prefix)
        return ""
