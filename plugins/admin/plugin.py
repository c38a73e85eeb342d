"""The admin plugin: moderators run their own room from the chat.

``!plugins``, ``!config``, ``!role``, ``!roles`` and ``!audit`` (see the mixed-in command
modules). The flood limits it lets moderators change (``limits.*``) are enforced by the core.
"""

from __future__ import annotations

from typing import Any

from civicbot_plugins.admin.role_commands import RoleCommands
from civicbot_plugins.admin.service import AdminConfig

from civicbot.api import ForgetReport


class AdminPlugin(RoleCommands):
    name = "admin"
    description = "Moderators choose this room's plugins, settings and roles."
    Config = AdminConfig
    templates = ("audit", "config", "plugins", "roles", "setting")
    manages_rooms = True

    async def setup(self) -> None:
        self.records = self.manage.records

    # -- hooks ---------------------------------------------------------------------------------
    async def export_user_data(self, user_id: str) -> dict[str, Any] | None:
        return await self.records.export(user_id)

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        report = await self.records.forget(user_id)
        self.manage.settings.invalidate()
        return report
