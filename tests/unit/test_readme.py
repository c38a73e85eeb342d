"""The README stays true: it opens with the two commands (the plugin guide is checked in
test_docs.py)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_starts_with_the_two_commands():
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    assert "civicbot run" in blocks[0]
    assert blocks[1].strip() == "bash .ci/run"


def test_no_built_in_plugin_is_called_coming():
    # Issue 22 §5: the README still called the consultations plugin "coming" once it shipped.
    from civicbot.core.loader import discover

    text = " ".join(README.read_text().lower().split())
    for name in discover(builtin_only=True):
        spoken = name.replace("_", " ")
        # "upcoming meetings" are meetings, not a plugin to come: whole words only.
        for phrase in (rf"\bcoming {spoken} plugin", rf"\b{spoken} plugin is coming"):
            assert not re.search(phrase, text), phrase
