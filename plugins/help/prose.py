"""Command docstrings as residents should read them.

Docstrings are hard-wrapped at the source's line length and mark commands and settings with
backticks. Shown as they are, a plain-text client (a bridge, SMS) gets lines broken mid-sentence
and literal backticks. Here paragraphs are joined back into single lines (the client wraps
them), and a backticked span becomes ``<code>`` in HTML and bare text in plain text; a span
that starts with a command's name gets the room's prefix (```help poll``` → ``!help poll``),
since that is what the person has to type.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from markupsafe import Markup, escape

_CODE = re.compile(r"`([^`\n]+)`")


def paragraphs(doc: str) -> list[str]:
    """Blank-line separated paragraphs, each on one line."""
    return [" ".join(part.split()) for part in re.split(r"\n\s*\n", doc) if part.strip()]


def _typed(span: str, prefix: str, commands: Collection[str]) -> str:
    word = span.split(maxsplit=1)[0].lower() if span.strip() else ""
    return f"{prefix}{span}" if word in commands and not span.startswith(prefix) else span


def as_text(doc: str, prefix: str, commands: Collection[str]) -> str:
    """Plain text: one line per paragraph, no backticks."""
    return "\n\n".join(
        _CODE.sub(lambda m: _typed(m.group(1), prefix, commands), part) for part in paragraphs(doc)
    )


def as_html(doc: str, prefix: str, commands: Collection[str]) -> list[Markup]:
    """HTML paragraphs: everything escaped, backticked spans as ``<code>``."""
    rendered = []
    for part in paragraphs(doc):
        pieces, last = [], 0
        for match in _CODE.finditer(part):
            pieces.append(escape(part[last : match.start()]))
            code = escape(_typed(match.group(1), prefix, commands))
            pieces.append(Markup("<code>%s</code>") % code)
            last = match.end()
        pieces.append(escape(part[last:]))
        rendered.append(Markup("").join(pieces))
    return rendered
