"""The plugin guide can't drift from the code: every code block in docs/plugins.md is copied
from the example plugin, which the suite installs and tests."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "plugins.md"
EXAMPLE = REPO / "examples" / "civicbot-reminders"


def lines_of(text: str) -> str:
    """The text's lines without indentation: a method shown on its own reads dedented."""
    return "\n" + "\n".join(line.strip() for line in text.splitlines() if line.strip()) + "\n"


def example_sources() -> list[str]:
    files = [p for p in EXAMPLE.rglob("*") if p.is_file() and p.suffix in (".py", ".toml", ".txt")]
    return [lines_of(p.read_text()) for p in files]


def test_every_code_block_of_the_plugin_guide_is_in_the_example():
    blocks = re.findall(r"```(python|toml|jinja)\n(.*?)```", GUIDE.read_text(), re.S)
    assert len(blocks) >= 10
    sources = example_sources()
    for _, block in blocks:
        wanted = lines_of(block)
        assert any(wanted in source for source in sources), block[:200]


def test_the_readme_links_the_guide():
    assert "docs/plugins.md" in (REPO / "README.md").read_text()
