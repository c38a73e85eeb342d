"""The README stays true: its plugin example loads and works."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from civicbot.loader import discover
from civicbot.testing.harness import MODERATOR, BotHarness

README = Path(__file__).resolve().parents[2] / "README.md"


def load_example(tmp_path: Path):
    text = README.read_text()
    section = text.split("## Writing a plugin", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "readme_weather.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("readme_weather", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_weather"] = module
    spec.loader.exec_module(module)
    return module.WeatherPlugin


async def test_readme_plugin_example_works(tmp_path):
    weather = load_example(tmp_path)
    async with BotHarness.create(
        tmp_path, {**discover(builtin_only=True), "weather": weather}
    ) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!weather report Sunny")
        assert "only forecasters" in h.last_text(room)
        await h.say(room, MODERATOR, "!weather report Sunny spells")
        assert h.last_text(room) == "Forecast noted (metric): Sunny spells"
        await h.say(room, "@ann:test", "!weather show W-1")
        assert h.last_text(room) == "Sunny spells"
        await h.say(room, "@ann:test", "!weather show W-9")
        assert "There is no report W-9" in h.last_text(room)
        await h.say(room, "@ann:test", "!help weather report")
        assert "it is kept as W-<number>" in h.last_text(room)


def test_readme_starts_with_the_two_commands():
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    assert "civicbot run" in blocks[0]
    assert blocks[1].strip() == "bash .ci/run"
