"""Loading plugins: every problem in one run, and an optional broken plugin left out loudly."""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from civicbot.app.cli import main
from civicbot.config import Settings
from civicbot.core import loader
from civicbot.core.bot import Bot
from civicbot.core.commands import command
from civicbot.core.context import Context
from civicbot.core.loader import PluginLoadError, discover_all, split_problems
from civicbot.core.plugin import Plugin, PluginConfig
from civicbot.scheduling.clock import FakeClock
from civicbot.scheduling.scheduler import ManualScheduler
from civicbot.storage.database import Database
from civicbot.transport.fake import FakeTransport


class Fine(Plugin[PluginConfig]):
    name = "fine"

    @command("fine")
    async def fine(self, ctx: Context[PluginConfig]) -> None:
        """Say fine."""
        await ctx.reply("fine")


class FailsAtSetup(Plugin[PluginConfig]):
    name = "flaky"

    async def setup(self) -> None:
        raise RuntimeError("the tool shed's API key is missing")

    @command("borrow")
    async def borrow(self, ctx: Context[PluginConfig]) -> None:
        """Borrow a tool."""
        await ctx.reply("borrowed")


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, *values: tuple[str, str]) -> None:
    points = [EntryPoint(name, value, loader.ENTRY_POINT_GROUP) for name, value in values]
    monkeypatch.setattr(loader, "entry_points", lambda group: points)


def test_every_broken_plugin_is_named_in_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(
        monkeypatch,
        ("tools", "no_such_module_tools:ToolsPlugin"),
        ("fine", "tests.unit.test_loader:Fine"),
        ("books", "no_such_module_books:BooksPlugin"),
    )
    classes, problems = discover_all()
    assert list(classes) == ["fine"]
    assert [p.name for p in problems] == ["books", "tools"]
    with pytest.raises(PluginLoadError) as raised:
        loader.discover()
    assert "'tools'" in str(raised.value) and "'books'" in str(raised.value)


def test_an_optional_plugin_is_kept_apart_from_the_fatal_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_entry_points(
        monkeypatch,
        ("tools", "no_such_module_tools:ToolsPlugin"),
        ("books", "no_such_module_books:BooksPlugin"),
    )
    _, problems = discover_all()
    fatal, optional = split_problems(problems, {"tools": {"required": False}})
    assert [p.name for p in fatal] == ["books"]
    assert [p.name for p in optional] == ["tools"]


def test_check_config_names_every_broken_plugin_and_only_warns_for_optional_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_entry_points(
        monkeypatch,
        ("tools", "no_such_module_tools:ToolsPlugin"),
        ("books", "no_such_module_books:BooksPlugin"),
    )
    config = tmp_path / "civicbot.toml"
    base = (
        '[matrix]\nhomeserver = "http://127.0.0.1:8008"\nuser_id = "@bot:hs"\n'
        'access_token = "x"\nencryption = false\n'
    )
    config.write_text(base)
    assert main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "'tools'" in err and "'books'" in err

    config.write_text(
        base + "[plugins.tools]\nrequired = false\n[plugins.books]\nrequired = false\n"
    )
    assert main(["check-config", "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "start without it" in err and "'books'" in err


async def start(tmp_path: Path, plugins: dict[str, Any], classes: dict[str, Any]) -> Bot:
    clock = FakeClock()
    db = await Database.open(tmp_path / "db.sqlite3")
    bot = Bot(
        Settings(bot={"data_dir": tmp_path}, plugins=plugins),
        FakeTransport(clock=clock),
        db,
        clock,
        ManualScheduler(clock),
        classes,
    )
    return bot


async def test_a_required_plugin_that_fails_stops_the_start(tmp_path: Path) -> None:
    bot = await start(tmp_path, {}, {"fine": Fine, "flaky": FailsAtSetup})
    try:
        with pytest.raises(PluginLoadError, match=r"plugin 'flaky' failed to load: .*API key"):
            await bot.start()
        assert bot.plugins == {}
    finally:
        await bot.db.close()


async def test_an_optional_plugin_that_fails_is_left_out_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start(
        tmp_path, {"flaky": {"required": False}}, {"fine": Fine, "flaky": FailsAtSetup}
    )
    try:
        with caplog.at_level(logging.ERROR):
            await bot.start()
        assert list(bot.plugins) == ["fine"]
        assert "flaky" in bot.left_out
        assert any(
            r.levelno == logging.ERROR and "WITHOUT 'flaky'" in r.getMessage()
            for r in caplog.records
        )
        names = {spec.name for spec in bot.index.unique()}
        assert "borrow" not in names and "fine" in names  # its commands are not half there
    finally:
        await bot.stop()
        await bot.db.close()


async def test_an_optional_plugin_with_a_bad_setting_is_left_out(tmp_path: Path) -> None:
    bot = await start(
        tmp_path,
        {"flaky": {"required": False, "colour": "green"}},
        {"fine": Fine, "flaky": FailsAtSetup},
    )
    try:
        await bot.start()
        assert "plugins.flaky.colour" in bot.left_out["flaky"]
    finally:
        await bot.stop()
        await bot.db.close()
