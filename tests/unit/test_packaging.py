"""What setup.py ships: every folder of the engine and the plugins that holds files is a
package of the wheel, so setuptools neither leaves one out nor warns "Package would be ignored"
(issue 22 §5: ten such warnings in every .ci/run)."""

from __future__ import annotations

import runpy
from pathlib import Path

import setuptools

REPO = Path(__file__).resolve().parents[2]


def shipped(monkeypatch) -> set[str]:
    found: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: found.update(kwargs))
    monkeypatch.chdir(REPO)
    runpy.run_path(str(REPO / "setup.py"))
    return set(found["packages"])


def folders(root: Path, name: str) -> set[str]:
    return {
        ".".join((name, *folder.relative_to(root).parts))
        for folder in [root, *root.rglob("*")]
        if folder.is_dir() and "__pycache__" not in folder.parts and any(folder.iterdir())
    }


def test_every_folder_with_files_is_a_package(monkeypatch):
    packages = shipped(monkeypatch)
    assert folders(REPO / "civicbot", "civicbot") <= packages
    assert folders(REPO / "plugins", "civicbot_plugins") <= packages
    assert "civicbot.web.templates" in packages
