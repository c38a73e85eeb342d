"""Per-plugin jinja2 templates, rendered to a plain-text body and an HTML body.

A plugin keeps ``templates/<name>.txt`` (required: bridges and plain clients see only this) and
optionally ``templates/<name>.html`` next to its module. HTML is autoescaped; the text is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    html: str | None = None


def _bar(fraction: float, width: int = 10) -> str:
    """A text bar that renders in every client: ``█████░░░░░``."""
    fraction = min(max(fraction, 0.0), 1.0)
    full = round(fraction * width)
    return "█" * full + "░" * (width - full)


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


class Templates:
    """The templates of one plugin (``<plugin package>/templates``)."""

    def __init__(self, directory: Path | None):
        search = [str(directory)] if directory and directory.is_dir() else []
        loader = jinja2.FileSystemLoader(search)
        common: dict[str, Any] = dict(
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            undefined=jinja2.StrictUndefined,
        )
        self._text = jinja2.Environment(loader=loader, autoescape=False, **common)
        self._html = jinja2.Environment(loader=loader, autoescape=True, **common)
        for env in (self._text, self._html):
            env.filters["bar"] = _bar
            env.globals["plural"] = _plural

    def has(self, name: str) -> bool:
        try:
            self._text.get_template(f"{name}.txt")
        except jinja2.TemplateNotFound:
            return False
        return True

    def render(self, name: str, **values: Any) -> Rendered:
        text = self._text.get_template(f"{name}.txt").render(**values).strip()
        try:
            html_template = self._html.get_template(f"{name}.html")
        except jinja2.TemplateNotFound:
            return Rendered(text)
        return Rendered(text, html_template.render(**values).strip())
