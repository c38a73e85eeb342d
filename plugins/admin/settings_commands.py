"""``!plugins`` and ``!config``: which plugins run in a room and how, set by its moderators."""

from __future__ import annotations

import re
from typing import Any

from civicbot_plugins.admin.service import (
    AdminConfig,
    SettingPath,
    entry_annotation,
    normalise,
    parse_setting_path,
    setting_rows,
    unknown_name,
)
from pydantic import ValidationError

from civicbot.api import (
    LIMITS,
    ROOM,
    WEB,
    CommandError,
    Context,
    Plugin,
    PluginInfo,
    Rest,
    Role,
    RoomConfig,
    RoomManagement,
    SettingError,
    command,
    describe_type,
    format_value,
    is_operator_only,
    parse_setting_value,
    role_satisfied,
)


class SettingsCommands(Plugin[AdminConfig]):
    """Mixed into :class:`~civicbot_plugins.admin.plugin.AdminPlugin`."""

    @property
    def manage(self) -> RoomManagement:
        """The write side of room settings, roles and audit (this plugin runs rooms)."""
        assert self.ctx.management is not None, "the admin plugin must declare manages_rooms"
        return self.ctx.management

    def plugin_infos(self) -> dict[str, PluginInfo]:
        return self.ctx.bot.plugin_infos()

    def known_roles(self) -> dict[str, str]:
        """Every role a grant or a threshold may name: built-in, declared, or required."""
        roles = {
            Role.ADMIN.value: "may do everything here",
            Role.MODERATOR.value: "runs the room's settings, plugins and roles",
        }
        for info in self.plugin_infos().values():
            for name, about in info.roles.items():
                roles.setdefault(name.lower(), about)
        for spec in self.ctx.bot.commands():
            if spec.requires != Role.EVERYONE:
                roles.setdefault(str(spec.requires), "")
        return roles

    async def require_admin(self, ctx: Context[AdminConfig], what: str) -> None:
        if not await ctx.has_role(Role.ADMIN):
            who = await self.ctx.permissions.describe(ctx.room_id, Role.ADMIN)
            raise CommandError(f"Sorry, only {who} can {what}.")

    # -- !plugins ----------------------------------------------------------------------------
    @command("plugins", requires=Role.MODERATOR, aliases=("plugin",))
    async def list_plugins(self, ctx: Context[AdminConfig]) -> None:
        """List the plugins and whether each is switched on in this room."""
        infos = self.plugin_infos()
        rows = []
        for name in sorted(self.ctx.bot.plugin_names()):
            config = await self.ctx.room_settings.get(ctx.room_id, name)
            overrides = await self.ctx.room_settings.overrides(ctx.room_id, name)
            info = infos.get(name)
            rows.append(
                {
                    "name": name,
                    "on": config.enabled,
                    "changed": "enabled" in overrides,
                    "description": info.description if info else "",
                }
            )
        await ctx.reply_template("plugins", plugins=rows)

    @command(
        "plugins enable",
        parent=list_plugins,
        requires=Role.MODERATOR,
        examples=("!plugins enable polls",),
    )
    async def enable(self, ctx: Context[AdminConfig], plugin: str) -> None:
        """Switch a plugin on in this room."""
        await self._switch(ctx, plugin, True)

    @command(
        "plugins disable",
        parent=list_plugins,
        requires=Role.MODERATOR,
        examples=("!plugins disable polls",),
    )
    async def disable(self, ctx: Context[AdminConfig], plugin: str) -> None:
        """Switch a plugin off in this room."""
        await self._switch(ctx, plugin, False)

    async def _switch(self, ctx: Context[AdminConfig], plugin: str, on: bool) -> None:
        names = self.ctx.bot.plugin_names()
        name = normalise(plugin)
        if name not in names:
            raise CommandError(unknown_name(f"plugin called '{name}'", name, sorted(names)))
        state = "on" if on else "off"
        if is_operator_only(self.ctx.room_settings.field(name, "enabled")):
            raise CommandError(
                f"The {name} plugin can't be switched {state} from the chat: rooms need it. "
                "Whoever runs the bot can change that in its config file."
            )
        if (await self.ctx.room_settings.get(ctx.room_id, name)).enabled == on:
            await ctx.reply(f"{name} is already switched {state} here.")
            return
        await self.manage.settings.set(ctx.room_id, name, "enabled", on, ctx.sender, ctx.now)
        if on:
            await ctx.reply(
                f"Switched {name} on here. Type {ctx.prefix}help to see what it adds; "
                f"{ctx.prefix}config {name} shows its settings."
            )
        else:
            await ctx.reply(
                f"Switched {name} off here. Switch it back on with "
                f"{ctx.prefix}plugins enable {name}."
            )

    # -- !config -----------------------------------------------------------------------------
    @command(
        "config",
        requires=Role.MODERATOR,
        examples=("!config", "!config polls", "!config polls.reminder_hours 48"),
    )
    async def config(
        self, ctx: Context[AdminConfig], setting: str | None = None, value: Rest | None = None
    ) -> None:
        """Show or change this room's settings.

        `config` shows every plugin's settings here (* marks those changed in this room);
        `config polls` shows one plugin's with what each accepts; `config polls.reminder_hours`
        shows one setting; add a value to change it. `config reset polls.reminder_hours` puts
        it back to the bot's default."""
        if setting is None:
            await self._show_all(ctx)
            return
        path = _path(setting, self.ctx.room_settings.models, ctx.prefix)
        raw: str | None = value
        if path.key is None and raw:  # "config polls reminder_hours 48", as phones type it
            key, _, raw = raw.partition(" ")
            path = _path(f"{path.plugin}.{key}", self.ctx.room_settings.models, ctx.prefix)
            raw = raw.strip() or None
        if path.key is None:
            await self._show_plugin(ctx, path.plugin)
        elif raw is None:
            await self._show_setting(ctx, path)
        else:
            await self._change(ctx, path, raw)

    @command(
        "config reset",
        parent=config,
        requires=Role.MODERATOR,
        examples=("!config reset polls.reminder_hours",),
    )
    async def reset(self, ctx: Context[AdminConfig], setting: str | None = None) -> None:
        """Put a setting (or all of one plugin's) back to the bot's default."""
        if setting is None:
            raise CommandError(
                f"Type {ctx.prefix}config reset <plugin>.<setting>, for example "
                f"{ctx.prefix}config reset polls.reminder_hours, or {ctx.prefix}config reset "
                "polls for all of one plugin's settings."
            )
        settings = self.manage.settings
        path = _path(setting, settings.models, ctx.prefix)
        if path.needs_admin or (path.plugin == ROOM and path.key is None):
            await self.require_admin(ctx, "change who counts as a moderator or admin here")
        if path.plugin == ROOM and path.entry is None:
            left = await settings.overrides(ctx.room_id, ROOM)
            left = {} if path.key is None else {k: v for k, v in left.items() if k != path.key}
            try:
                await self._keep_own_admin(ctx, left)
            except SettingError as exc:
                raise CommandError(f"I didn't reset {path}: {exc}.") from None
        if path.key is None:
            removed = await settings.reset(ctx.room_id, path.plugin, None, ctx.sender, ctx.now)
            if not removed:
                await ctx.reply(f"Nothing of {path.plugin} was changed here: it's all defaults.")
                return
            await ctx.reply(f"All {path.plugin} settings are back to the defaults here.")
            return
        if path.entry is not None:
            await self._reset_entry(ctx, path)
            return
        try:
            removed = await settings.reset(ctx.room_id, path.plugin, path.key, ctx.sender, ctx.now)
        except SettingError as exc:
            problem = str(exc).removeprefix(f"{path.plugin}: ")
            raise CommandError(f"I didn't reset {path}: {problem}.") from None
        now = format_value(getattr(await settings.get(ctx.room_id, path.plugin), path.key))
        if removed:
            await ctx.reply(f"{path} is back to the default here: {now}.")
        else:
            await ctx.reply(f"{path} wasn't changed here; it's the default already: {now}.")

    async def _reset_entry(self, ctx: Context[AdminConfig], path: SettingPath) -> None:
        assert path.key is not None and path.entry is not None
        current = dict(
            getattr(await self.ctx.room_settings.get(ctx.room_id, path.plugin), path.key)
        )
        if path.entry not in current:
            await ctx.reply(f"{path} wasn't set here.")
            return
        del current[path.entry]
        await self._store(ctx, path, current)
        await ctx.reply(f"Removed {path}; it follows the default again.")

    async def _show_all(self, ctx: Context[AdminConfig]) -> None:
        names = [ROOM, LIMITS, WEB, *sorted(self.ctx.bot.plugin_names())]
        groups = [(name, await self._rows(ctx, name)) for name in names]
        await ctx.reply_template("config", groups=groups, one=False, example=_example(groups))

    async def _show_plugin(self, ctx: Context[AdminConfig], plugin: str) -> None:
        groups = [(plugin, await self._rows(ctx, plugin))]
        await ctx.reply_template("config", groups=groups, one=True, example=_example(groups))

    async def _show_setting(self, ctx: Context[AdminConfig], path: SettingPath) -> None:
        rows = {row.key: row for row in await self._rows(ctx, path.plugin)}
        row = rows[str(path.key)]
        await ctx.reply_template("setting", path=str(path), r=row)

    async def _rows(self, ctx: Context[AdminConfig], plugin: str) -> list[Any]:
        settings = self.manage.settings
        overrides = await settings.overrides(ctx.room_id, plugin)
        rows = setting_rows(
            settings.models[plugin],
            await settings.get(ctx.room_id, plugin),
            settings.default(plugin),
            set(overrides),
        )
        # The room itself cannot be switched off; "room.enabled" would only puzzle people.
        return [row for row in rows if not (plugin == ROOM and row.key == "enabled")]

    async def _change(self, ctx: Context[AdminConfig], path: SettingPath, raw: str) -> None:
        settings = self.manage.settings
        assert path.key is not None
        if path.needs_admin:
            await self.require_admin(ctx, "change who counts as a moderator or admin here")
        field = settings.field(path.plugin, path.key)
        try:
            if path.entry is not None:
                value: Any = dict(getattr(await settings.get(ctx.room_id, path.plugin), path.key))
                annotation = entry_annotation(settings.models[path.plugin], path.key)
                value[path.entry] = parse_setting_value(raw, annotation)
            else:
                value = parse_setting_value(raw, field.annotation)
            await self._check(ctx, path, value)
        except SettingError as exc:
            raise CommandError(await self._refusal(ctx, path, str(exc))) from None
        config = await self._store(ctx, path, value)
        now = format_value(getattr(config, path.key))
        default = format_value(getattr(settings.default(path.plugin), path.key))
        await ctx.reply(
            f"Done: {path.plugin}.{path.key} is now {now} here (the default is {default}). "
            f"Undo with {ctx.prefix}config reset {path}."
        )

    async def _store(self, ctx: Context[AdminConfig], path: SettingPath, value: Any) -> Any:
        assert path.key is not None
        try:
            if path.plugin == ROOM:
                overrides = await self.ctx.room_settings.overrides(ctx.room_id, ROOM)
                await self._keep_own_admin(ctx, {**overrides, path.key: value})
            return await self.manage.settings.set(
                ctx.room_id, path.plugin, path.key, value, ctx.sender, ctx.now
            )
        except SettingError as exc:
            raise CommandError(await self._refusal(ctx, path, str(exc))) from None

    async def _check(self, ctx: Context[AdminConfig], path: SettingPath, value: Any) -> None:
        """Rules no model can know: role names must exist; nobody demotes themselves."""
        if (path.plugin, path.key) == (ROOM, "role_levels") and isinstance(value, dict):
            known = self.known_roles()
            for role in value:
                if str(role).lower() not in known:
                    raise SettingError(
                        f"there's no role called '{role}'. Roles here: {', '.join(sorted(known))}"
                    )

    async def _keep_own_admin(self, ctx: Context[AdminConfig], overrides: dict[str, Any]) -> None:
        """Refuse a change to the room's levels that would leave the admin making it without
        admin rights here: nobody could then put it right from the chat."""
        if not await ctx.has_role(Role.ADMIN):
            return  # not an admin now (admin-only settings are refused before this)
        merged = {**self.ctx.room_settings.default(ROOM).model_dump(), **overrides}
        try:
            would_be = RoomConfig.model_validate(merged)
        except ValidationError:
            return  # the model refuses it on its own, with a better message
        levels = {
            Role.MODERATOR: would_be.moderator_level,
            Role.ADMIN: would_be.admin_level,
            **would_be.role_levels,
        }
        power = (await self.ctx.permissions.power_levels(ctx.room_id)).level(ctx.sender)
        granted = await self.ctx.permissions.granted(ctx.room_id, ctx.sender)
        if not role_satisfied(Role.ADMIN, power, granted, levels):
            raise SettingError(
                f"that would take away your own admin rights here (your power level is "
                f"{format_value(power)})"
            )

    async def _refusal(self, ctx: Context[AdminConfig], path: SettingPath, problem: str) -> str:
        rows = {row.key: row for row in await self._rows(ctx, path.plugin)}
        row = rows[str(path.key)]
        if row.operator_only:
            return f"Only whoever runs the bot can change {path}, in the bot's config file."
        problem = problem.removeprefix(f"{path}: ").removeprefix(f"{path.plugin}.{path.key}: ")
        problem = problem[:1].lower() + problem[1:]
        # pydantic's "input should be a valid integer, unable to parse string as an integer"
        problem = _WRONG_TYPE.sub(r"\1 isn't the right kind of value", problem)
        accepts, example = row.accepts, row.example
        if path.entry is not None:
            entry_type = entry_annotation(self.ctx.room_settings.models[path.plugin], row.key)
            accepts, example = describe_type(entry_type), "30" if entry_type is int else "…"
        return (
            f"I couldn't change {path}: {problem.rstrip('.')}.\n"
            f"It takes {accepts}. For example: {ctx.prefix}config {path} {example}"
        )


_WRONG_TYPE = re.compile(r"^input should be a valid [^(]*\(got (.+)\)$")


def _path(text: str, models: dict[str, Any], prefix: str = "!") -> SettingPath:
    try:
        path = parse_setting_path(text, models)
    except SettingError as exc:
        raise CommandError(str(exc)) from None
    if (path.plugin, path.key) == (ROOM, "enabled"):
        raise CommandError(
            f"The room itself is always on. To switch a plugin off, type {prefix}plugins "
            "disable <name>."
        )
    return path


def _example(groups: list[tuple[str, list[Any]]]) -> str:
    for plugin, rows in groups:
        for row in rows:
            if not row.operator_only and row.key != "enabled" and plugin != ROOM:
                return f"{plugin}.{row.key} {row.example}"
    return "room.timezone Europe/London"
