"""The plugin boundary holds: plugins import the engine only through ``civicbot.api`` and never
import one another, and the API cannot be misused into a silent permission bypass."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import civicbot.api as api
from civicbot.core.context import RoleCheck

REPO = Path(__file__).resolve().parents[2]
PLUGIN_TREES = {
    "civicbot_plugins": REPO / "plugins",
    "civicbot_reminders": REPO / "examples" / "civicbot-reminders" / "civicbot_reminders",
}


def engine_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.extend((node.lineno, name) for name in names)
    return found


def plugin_sources() -> list[tuple[str, Path]]:
    return [
        (package, path)
        for package, root in PLUGIN_TREES.items()
        for path in sorted(root.rglob("*.py"))
    ]


def test_plugins_import_the_engine_only_through_the_api() -> None:
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for _, path in plugin_sources()
        for line, module in engine_imports(path)
        if (module == "civicbot" or module.startswith("civicbot.")) and module != "civicbot.api"
    ]
    assert not wrong, "plugins must import from civicbot.api only:\n" + "\n".join(wrong)


def test_a_plugins_own_tests_use_only_the_api_and_the_test_kit() -> None:
    """What the guide shows a plugin author (the example plugin's tests) reaches the engine
    only through ``civicbot.api`` and the shipped test kit, ``civicbot.testing``."""
    tests = REPO / "examples" / "civicbot-reminders" / "tests"
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in sorted(tests.rglob("*.py"))
        for line, module in engine_imports(path)
        if (module == "civicbot" or module.startswith("civicbot."))
        and module != "civicbot.api"
        and not module.startswith("civicbot.testing")
    ]
    assert not wrong, "a plugin's tests import civicbot.api and civicbot.testing:\n" + "\n".join(
        wrong
    )


def test_plugins_never_import_each_other() -> None:
    wrong = []
    for package, path in plugin_sources():
        if package != "civicbot_plugins":
            continue
        own = path.relative_to(PLUGIN_TREES[package]).parts[0]
        for line, module in engine_imports(path):
            parts = module.split(".")
            if parts[0] == "civicbot_plugins" and len(parts) > 1 and parts[1] != own:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_boundary_check_sees_a_deep_import(tmp_path: Path) -> None:
    source = tmp_path / "plugin.py"
    source.write_text(
        "from civicbot.core.outgoing import Outgoing\nimport civicbot.storage.database\n"
    )
    assert [m for _, m in engine_imports(source)] == [
        "civicbot.core.outgoing",
        "civicbot.storage.database",
    ]


def test_every_public_name_is_importable_and_listed_once() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        assert getattr(api, name) is not None, name


async def test_an_unawaited_role_check_raises_instead_of_letting_everyone_through() -> None:
    async def no() -> bool:
        return False

    check = RoleCheck(no())
    with pytest.raises(TypeError, match="must be awaited"):
        if not check:  # the bug the guide once taught: always false, so nobody was refused
            pass
    assert await RoleCheck(no()) is False
