"""Per-plugin jinja2 templates, rendered to a plain-text body and an HTML body.

A plugin keeps ``templates/<name>.txt`` (required: bridges and plain clients see only this) and
optionally ``templates/<name>.html`` next to its module. HTML is autoescaped; the text is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.nodes


class TemplateCheckError(Exception):
    """A plugin's templates are missing or broken (found at load time, not when first used)."""


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

    def __init__(self, directory: Path | None, fallback: Path | None = None):
        """``fallback`` is searched after ``directory``, file by file (an operator's own
        templates over a plugin's built-in ones)."""
        self.directory = directory
        search = [str(d) for d in (directory, fallback) if d and d.is_dir()]
        loader = jinja2.FileSystemLoader(search)
        common: dict[str, Any] = dict(
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            undefined=jinja2.StrictUndefined,
            # Templates are read once: they change with an upgrade (a restart), so no stat of
            # the file on every render.
            auto_reload=False,
        )
        self._text = jinja2.Environment(loader=loader, autoescape=False, **common)
        self._html = jinja2.Environment(loader=loader, autoescape=True, **common)
        for env in (self._text, self._html):
            env.filters["bar"] = _bar
            env.globals["plural"] = _plural
        # jinja2 caches the templates it found, not the ones it did not: a text-only template
        # would be searched for its .html on every render.
        self._no_html: set[str] = set()

    def check(self, names: Sequence[str]) -> None:
        """Every template in the directory parses and names only filters and tests that
        exist, and each of ``names`` has its ``.txt``.

        Only parsed here, not compiled: compiling every template of every plugin was most of
        a start's set-up time, and a template is compiled on its first render instead (the
        two environments differ only in escaping, which parsing does not see). A wheel built
        without its package data has no templates: say so at load."""
        env = self._text
        listed = set(env.list_templates())
        for name in sorted(listed):
            assert env.loader is not None
            source, _, _ = env.loader.get_source(env, name)
            try:
                tree = env.parse(source, name)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateCheckError(
                    f"template {name} line {exc.lineno}: {exc.message}"
                ) from None
            for node, known, what in (
                *((n, env.filters, "filter") for n in tree.find_all(jinja2.nodes.Filter)),
                *((n, env.tests, "test") for n in tree.find_all(jinja2.nodes.Test)),
            ):
                if node.name not in known:
                    raise TemplateCheckError(
                        f"template {name} line {node.lineno}: No {what} named '{node.name}'."
                    )
        missing = [name for name in names if f"{name}.txt" not in listed]
        if missing:
            where = self.directory if self.directory else "no templates directory"
            raise TemplateCheckError(
                f"templates not found in {where}: {', '.join(n + '.txt' for n in missing)} "
                "(a package must ship templates/ as package data)"
            )

    def has(self, name: str) -> bool:
        try:
            self._text.get_template(f"{name}.txt")
        except jinja2.TemplateNotFound:
            return False
        return True

    def render(self, name: str, **values: Any) -> Rendered:
        text = self._text.get_template(f"{name}.txt").render(**values).strip()
        if name in self._no_html:
            return Rendered(text)
        try:
            html_template = self._html.get_template(f"{name}.html")
        except jinja2.TemplateNotFound:
            self._no_html.add(name)
            return Rendered(text)
        return Rendered(text, html_template.render(**values).strip())
