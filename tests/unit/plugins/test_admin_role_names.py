"""Issue 9 item 5: the README's `!role grant` example names a role that exists, and a role no
installed plugin declares is refused as unknown, listing the roles there are."""

from __future__ import annotations

import re
from pathlib import Path

from civicbot_plugins.admin.plugin import AdminPlugin
from civicbot_plugins.help.plugin import HelpPlugin

from civicbot.testing.harness import BotHarness
from tests.unit.plugins.test_admin import ANN, BOB, BOSS, ask

SAM = "@sam:example.org"  # the README example's neighbour
README = Path(__file__).resolve().parents[3] / "README.md"


def built_in(tmp_path):
    return BotHarness.create(tmp_path, {"help": HelpPlugin, "admin": AdminPlugin})


async def test_the_readme_role_example_works_with_the_built_in_plugins(tmp_path):
    example = re.search(r"`(!role grant @sam:example\.org \w+)`", README.read_text()).group(1)
    async with built_in(tmp_path) as h:
        room = h.room(members=[ANN, BOB, BOSS, SAM], power={BOSS: 100})  # Sam has joined
        assert "Granted the" in await ask(h, room, BOSS, example)


async def test_a_role_no_plugin_declares_is_unknown_and_the_hint_names_a_real_one(tmp_path):
    async with built_in(tmp_path) as h:
        room = h.room(members=[ANN, BOB, BOSS, SAM], power={BOSS: 100})  # Sam has joined
        unknown = await ask(h, room, BOSS, "!role grant @sam:example.org councillor")
        assert unknown.startswith("'councillor' is an unknown role: no plugin installed here")
        assert "The roles are admin, moderator" in unknown
        hint = await ask(h, room, BOSS, "!role grant sam")
        example = re.search(r"for example:? (!role grant \S+ (\w+))", hint, re.I)
        assert example, hint
        assert "Granted the" in await ask(h, room, BOSS, example.group(1))
