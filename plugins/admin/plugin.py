"""The admin plugin: moderators run their own room from the chat.

``!plugins``, ``!config``, ``!role``, ``!roles`` and ``!audit`` (see the mixed-in command
modules), plus the flood guard every command passes and the pacing of the bot's own sends.
"""

from __future__ import annotations

from typing import Any

from civicbot_plugins.admin.role_commands import RoleCommands
from civicbot_plugins.admin.service import AdminConfig, flood_limits
from civicbot_plugins.admin.store import AdminStore

from civicbot.commands import Command
from civicbot.events import Event
from civicbot.permissions import Role
from civicbot.plugin import ForgetReport
from civicbot.ratelimit import (
    ALLOWED,
    FloodGuard,
    FloodLimits,
    Verdict,
    flood_notice,
)


class AdminPlugin(RoleCommands):
    name = "admin"
    description = "Moderators choose this room's plugins, settings and roles."
    Config = AdminConfig

    async def setup(self) -> None:
        self.store = AdminStore(self.ctx.db)
        defaults = self.ctx.default_config
        self.ctx.bot.pacer.configure(defaults.send_burst, defaults.sends_per_second)
        self.guard = FloodGuard(self._limits, self._exempt, self.ctx.clock.monotonic)
        self.ctx.bot.set_flood_guard(self.guard)
        self.ctx.bot.add_command_gate(self._gate)

    async def teardown(self) -> None:
        if self.ctx.bot.flood_guard is self.guard:
            self.ctx.bot.set_flood_guard(None)

    async def _limits(self, room_id: str) -> FloodLimits:
        return flood_limits(await self.ctx.config(room_id))

    async def _exempt(self, room_id: str, user_id: str) -> bool:
        return await self.ctx.permissions.has(room_id, user_id, Role.MODERATOR)

    async def _gate(self, event: Event, command: Command) -> str | None:
        """Before every command: one polite notice to someone (or a room) over the limit,
        then silence until the cool-down ends. A moderator's own admin commands always pass, so
        no setting can rate-limit the people who would change it back."""
        if command.plugin == self.name and await self._exempt(event.room_id, event.sender):
            self.guard.remember(event.event_id, ALLOWED)  # and so are its replies
            return None
        decision = await self.guard.admit(event.room_id, event.sender, event.event_id)
        if decision.allowed:
            return None
        if decision.verdict is Verdict.NOTICE:
            self.guard.remember(event.event_id, ALLOWED)  # so the notice itself goes out
            return flood_notice(decision, self.ctx.settings.bot.command_prefix)
        return ""

    # -- hooks ---------------------------------------------------------------------------------
    async def export_user_data(self, user_id: str) -> dict[str, Any] | None:
        return await self.store.export(user_id)

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        report = await self.store.forget(user_id)
        self.ctx.room_settings.invalidate()
        return report
