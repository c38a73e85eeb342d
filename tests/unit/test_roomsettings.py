"""Per-room settings: a read that races a change never caches the stale value."""

from __future__ import annotations

import asyncio

from civicbot.core.plugin import PluginConfig
from civicbot.policy.room_settings import RoomSettings
from civicbot.storage.database import Database


class DemoConfig(PluginConfig):
    hours: int = 24


async def test_a_read_racing_a_change_does_not_cache_the_old_value(tmp_path):
    db = await Database.open(tmp_path / "db.sqlite3")
    settings = RoomSettings(db, {}, {"demo": DemoConfig})
    read_started, let_read_finish = asyncio.Event(), asyncio.Event()
    real_overrides = settings.overrides

    async def slow_overrides(room_id: str, plugin: str):
        found = await real_overrides(room_id, plugin)  # reads the old rows ...
        read_started.set()
        await let_read_finish.wait()  # ... and the change lands before it caches them
        return found

    settings.overrides = slow_overrides  # type: ignore[method-assign]
    reader = asyncio.create_task(settings.get("!r:test", "demo"))
    await read_started.wait()
    settings.overrides = real_overrides  # type: ignore[method-assign]
    await settings.set("!r:test", "demo", "hours", 48, "@mod:test")
    let_read_finish.set()
    assert (await reader).hours == 24  # that read saw the world before the change
    assert (await settings.get("!r:test", "demo")).hours == 48  # but did not cache it
    await db.close()


async def test_setting_the_value_it_already_has_records_nothing_new(tmp_path):
    """A !config replayed after a crash must not write a second audit row."""
    db = await Database.open(tmp_path / "db.sqlite3")
    settings = RoomSettings(db, {}, {"demo": DemoConfig})
    await settings.set("!r:test", "demo", "hours", 48, "@mod:test")
    await settings.set("!r:test", "demo", "hours", 48, "@mod:test")
    assert await db.fetchval("SELECT count(*) FROM core_audit") == 1
    await settings.set("!r:test", "demo", "hours", 12, "@mod:test")
    assert await db.fetchval("SELECT count(*) FROM core_audit") == 2
    await db.close()


async def test_a_reset_that_would_leave_the_rest_inconsistent_is_refused(tmp_path):
    """Found by the settings fuzzer: moderator 30, admin 40, then resetting the moderator
    level (back to 50) would leave moderators above admins."""
    import pytest

    from civicbot.policy.plugin_config import ROOM
    from civicbot.policy.room_settings import SettingError

    db = await Database.open(tmp_path / "db.sqlite3")
    settings = RoomSettings(db, {}, {})
    await settings.set("!r:test", ROOM, "moderator_level", 30, "@admin:test")
    await settings.set("!r:test", ROOM, "admin_level", 40, "@admin:test")
    with pytest.raises(SettingError, match="moderator_level"):
        await settings.reset("!r:test", ROOM, "moderator_level", "@admin:test")
    config = await settings.get("!r:test", ROOM)
    assert (config.moderator_level, config.admin_level) == (30, 40)
    await db.close()
