"""``!role``, ``!roles`` and ``!audit``: roles on top of power levels, and who changed what."""

from __future__ import annotations

import re

from civicbot_plugins.admin.service import (
    ADMIN_ONLY_ROLES,
    AdminConfig,
    audit_line,
    format_utc,
    normalise,
)
from civicbot_plugins.admin.settings_commands import SettingsCommands

from civicbot.api import ROOM, CommandError, Context, Rest, Role, UserId, command

AUDIT_DEFAULT, AUDIT_MAX = 10, 50
MAX_USER_ID_BYTES = 255  # the spec's limit, '@', localpart, ':' and server name together
# Localparts as the spec allows them (historical ones included: printable ASCII but ':'), and
# server names: a DNS name, an IPv4 address or a bracketed IPv6 address, with an optional port.
_LOCALPART = r"[\x21-\x39\x3b-\x7e]+"
_SERVER = r"(?:[A-Za-z0-9\-.]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
_USER_ID = re.compile(rf"@{_LOCALPART}:{_SERVER}")


def user_id_problem(user_id: str) -> str | None:
    """Why ``user_id`` is not a valid Matrix user id, in words for the room; None if it is."""
    if len(user_id.encode()) > MAX_USER_ID_BYTES:
        return f"A Matrix id is at most {MAX_USER_ID_BYTES} characters long"
    if not _USER_ID.fullmatch(user_id):
        return "That isn't a Matrix id; write it like @sam:example.org"
    return None


class RoleCommands(SettingsCommands):
    """Mixed into :class:`~civicbot_plugins.admin.plugin.AdminPlugin`."""

    @command("role", requires=Role.MODERATOR, hidden=True)
    async def role(self, ctx: Context[AdminConfig], words: Rest | None = None) -> None:
        """Grant or take back a role: see `role grant` and `role revoke`."""
        raise CommandError(
            f"Type {ctx.prefix}role grant @name:server <role> to give someone a role here, "
            f"{ctx.prefix}role revoke @name:server <role> to take it back, or {ctx.prefix}roles "
            "to see the roles and who has them."
        )

    @command(
        "role grant",
        parent=role,
        requires=Role.MODERATOR,
        aliases=("give", "add"),
        # Only roles that exist everywhere: plugin roles (a consultations plugin's councillor)
        # are there only when that plugin is installed.
        examples=("!role grant @sam:example.org moderator",),
    )
    async def grant(self, ctx: Context[AdminConfig], person: UserId, role: str) -> None:
        """Give someone a role in this room, on top of their power level.

        Only to someone who has joined the room."""
        problem = user_id_problem(person)
        if problem:
            raise CommandError(f"{problem}, for example {ctx.prefix}role grant @sam:example.org …")
        role = await self._checked_role(ctx, role)
        if person not in await self.ctx.rooms.joined_members(ctx.room_id):
            raise CommandError(
                f"{person} isn't a member of this room, so I can't give them a role here. "
                "Invite them first; once they have joined, grant it again."
            )
        at = int(ctx.now.timestamp())
        if not await self.manage.roles.grant(ctx.room_id, person, role, ctx.sender, at):
            await ctx.reply(f"{person} already has the {role} role here.")
            return
        uses = sorted(
            f"{ctx.prefix}{c.name}" for c in self.ctx.bot.commands() if c.requires == role
        )
        more = f" They can now use {', '.join(uses)}." if uses else ""
        await ctx.reply(f"Granted the {role} role to {person} in this room.{more}")

    @command(
        "role revoke",
        parent=role,
        requires=Role.MODERATOR,
        aliases=("remove",),
        examples=("!role revoke @sam:example.org moderator",),
    )
    async def revoke(self, ctx: Context[AdminConfig], person: UserId, role: str) -> None:
        """Take a role back from someone in this room."""
        problem = user_id_problem(person)
        if problem:
            raise CommandError(f"{problem}, for example {ctx.prefix}role revoke @sam:example.org …")
        role = await self._checked_role(ctx, role)
        at = int(ctx.now.timestamp())
        if not await self.manage.roles.revoke(ctx.room_id, person, role, ctx.sender, at):
            raise CommandError(
                f"{person} doesn't have a granted {role} role here ({ctx.prefix}roles lists them)."
            )
        still = await ctx.has_role(role, person)
        note = " Their power level still lets them act as one." if still else ""
        await ctx.reply(f"Took the {role} role back from {person}.{note}")

    async def _checked_role(self, ctx: Context[AdminConfig], role: str) -> str:
        role, known = normalise(role), self.known_roles()
        if role not in known:
            raise CommandError(
                f"'{role}' is an unknown role: no plugin installed here declares it. The roles "
                f"are {', '.join(sorted(known))} ({ctx.prefix}roles shows who holds them)."
            )
        if role in ADMIN_ONLY_ROLES:
            await self.require_admin(ctx, f"grant or take back the {role} role")
        return role

    @command("roles", requires=Role.MODERATOR)
    async def list_roles(self, ctx: Context[AdminConfig]) -> None:
        """List the roles, the power level each needs here, and who has been granted one."""
        levels = await self.ctx.permissions.role_levels(ctx.room_id)
        room = await self.ctx.room_settings.get(ctx.room_id, ROOM)
        explicit = set(getattr(room, "role_levels", {}))
        rows = []
        for name, about in sorted(self.known_roles().items()):
            level = levels.get(name, levels[Role.MODERATOR])
            builtin = name in (Role.MODERATOR, Role.ADMIN)
            rows.append(
                {
                    "name": name,
                    "level": level,
                    "as_moderators": not builtin and name not in explicit,
                    "about": about,
                }
            )
        grants = [
            {
                "user": g.user_id,
                "role": g.role,
                "by": g.granted_by,
                "when": format_utc(g.granted_at),
            }
            for g in await self.manage.roles.grants(ctx.room_id)
        ]
        await ctx.reply_template("roles", roles=rows, grants=grants)

    @command("audit", requires=Role.MODERATOR, examples=("!audit", "!audit 30"))
    async def audit(self, ctx: Context[AdminConfig], count: int = AUDIT_DEFAULT) -> None:
        """Show recent changes to this room's settings and roles: who, what, when."""
        count = min(max(count, 1), AUDIT_MAX)
        entries = await self.manage.audit.recent(ctx.room_id, count)
        lines = [audit_line(entry) for entry in entries]
        await ctx.reply_template("audit", lines=lines, count=len(lines), most=AUDIT_MAX)
