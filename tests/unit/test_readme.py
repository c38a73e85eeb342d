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
