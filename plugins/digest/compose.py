"""Building a digest: the plugins' sections and the week's numbers, rendered with the built-in
templates or the operator's own (``plugins.digest.template_dir``).

A template that does not compile, fails while rendering, or makes HTML Matrix clients would
not show raises :class:`TemplateProblem` with a message naming the file and line: the caller
logs it at ERROR, tells the moderator who asked, and posts nothing.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from civicbot_plugins.digest.service import (
    WeekNumbers,
    busiest,
    html_problems,
    ordered_sections,
)
from civicbot_plugins.digest.store import DigestStore
from markupsafe import Markup, escape

from civicbot.api import DigestSection, Rendered, TemplateCheckError, Templates, matrix_to

NAMES = ("digest", "quiet", "personal", "space")


class TemplateProblem(Exception):
    """A digest template is broken; the message says which and where."""


@dataclass(frozen=True)
class SectionView:
    """A section as the templates see it: ``html`` is safe markup (the plugin's own, which
    its autoescaped template made, or the text escaped with line breaks)."""

    title: str
    text: str
    html: Markup


def section_view(section: DigestSection) -> SectionView:
    if section.html:
        html = Markup(section.html)
    else:
        html = Markup("<p>") + Markup("<br>").join(
            escape(line) for line in section.text.split("\n")
        )
        html += Markup("</p>")
    return SectionView(section.title, section.text, html)


def day_label(moment: datetime, zone: ZoneInfo) -> str:
    """``Sun 30 Nov``: short enough for a phone, unambiguous within a digest."""
    local = moment.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b}"


class DigestTemplates:
    """The built-in templates, with the operator's directory (if set) taking precedence file
    by file; a broken override is reported on every render, never silently replaced."""

    def __init__(self, builtin: Templates, override_dir: str | None):
        self._builtin = builtin
        self._override: Templates | None = None
        self.problem = ""
        if override_dir:
            path = Path(override_dir).expanduser()
            if not path.is_dir():
                self.problem = f"plugins.digest.template_dir {override_dir} is not a directory"
                return
            self._override = Templates(path, fallback=builtin.directory)
            try:
                self._override.check(())
            except TemplateCheckError as exc:
                self.problem = f"{exc} (in {path})"

    def render(self, name: str, **values: Any) -> Rendered:
        if self.problem:
            raise TemplateProblem(self.problem)
        chosen = self._override or self._builtin
        try:
            rendered = chosen.render(name, **values)
        except jinja2.TemplateError as exc:
            raise TemplateProblem(f"{_where(exc, name)}: {exc}") from None
        if rendered.html is not None:
            problems = html_problems(rendered.html)
            if problems:
                raise TemplateProblem(f"{name}.html makes HTML Matrix clients won't show: "
                                      + "; ".join(problems))  # fmt: skip
        if not rendered.text.strip():
            raise TemplateProblem(f"{name}.txt rendered nothing (every digest needs a text body)")
        return rendered


def _where(exc: jinja2.TemplateError, name: str) -> str:
    """``digest.html line 4``, from the traceback jinja2 rewrites to point into templates."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{exc.filename or exc.name or name} line {exc.lineno}"
    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith((".txt", ".html")):
            found = f"{Path(frame.filename).name} line {frame.lineno}"
    return found or f"template {name}"


async def week_numbers(
    store: DigestStore, room_id: str, since: datetime, until: datetime, threads: int
) -> WeekNumbers:
    """Counts for the window: messages, first joins, the busiest threads (flushed counts)."""
    start, end = int(since.timestamp()), int(until.timestamp())
    replies = await store.thread_replies(room_id, start, end) if threads else {}
    return WeekNumbers(
        messages=await store.messages(room_id, start, end),
        new_members=await store.new_members(room_id, start, end),
        threads=busiest(replies, room_id, threads),
    )


def window(until: datetime) -> tuple[datetime, datetime]:
    return until - timedelta(days=7), until


def sections_from(found: list[tuple[str, Any]]) -> list[SectionView]:
    return [section_view(s) for s in ordered_sections(found)]


# Homeservers refuse an event over 65,536 bytes of JSON; encryption makes a message about a
# third bigger (base64), and JSON escapes every non-ASCII character (a bullet is 6 bytes).
MAX_MESSAGE_JSON = 40_000


def fit_one_message(rendered: Rendered, prefix: str) -> Rendered:
    """The digest as one message a homeserver takes: as it is when it fits; else its plain
    text alone (every client shows it); else that text cut at a line, saying what was left
    out. A very busy week still gets its digest, never a refused send."""
    if _json_size(rendered.text, rendered.html) <= MAX_MESSAGE_JSON:
        return rendered
    if _json_size(rendered.text) <= MAX_MESSAGE_JSON:
        return Rendered(rendered.text)
    lines = rendered.text.splitlines()
    kept: list[str] = []
    budget = MAX_MESSAGE_JSON - 400  # room for the closing line
    for line in lines:
        budget -= _json_size(line) + 2
        if budget < 0:
            break
        kept.append(line)
    more = len(lines) - len(kept)
    kept.append(
        f"… and {more} more lines: too much for one message this week. Each tool lists its "
        f"own ({prefix}polls, {prefix}meetings, {prefix}needs, {prefix}consultations)."
    )
    return Rendered("\n".join(kept))


def _json_size(*parts: str | None) -> int:
    return sum(len(json.dumps(part)) for part in parts if part)


class Composer:
    """Builds and renders the room, personal and space digests for the plugin and its runner."""

    def __init__(self, ctx: Any, store: DigestStore, looks: DigestTemplates):
        self.ctx = ctx
        self.store = store
        self.looks = looks

    async def room_name(self, room_id: str) -> str:
        state = await self.ctx.rooms.state_event(room_id, "m.room.name")
        name = state.get("name") if isinstance(state, dict) else None
        return name.strip()[:80] if isinstance(name, str) else ""

    async def room_values(self, room_id: str, since: datetime, until: datetime) -> dict[str, Any]:
        """Everything a room's digest shows for [since, until): only enabled plugins' sections
        (each plugin leaves out what it keeps private) and numbers without names."""
        config = await self.ctx.config(room_id)
        found = await self.ctx.bot.collect_hook("digest_section", room_id, room_id, since, until)
        zone = await self.ctx.timezone(room_id)
        numbers = await week_numbers(self.store, room_id, since, until, config.threads)
        sections = sections_from(found)
        return {
            "room_id": room_id,
            "room_name": await self.room_name(room_id),
            "since": day_label(since, zone),
            "until": day_label(until - timedelta(seconds=1), zone),
            "sections": sections,
            "numbers": numbers,
            "empty": not sections and numbers.empty,
            "link": matrix_to(room_id),
            "prefix": self.ctx.prefix,
        }

    async def room(
        self, room_id: str, until: datetime, *, late: bool = False, preview: bool = False
    ) -> Rendered | None:
        """The room's digest for the week before ``until``; None when the week was empty and
        the room chose to post nothing then (a preview always shows something)."""
        since, until = window(until)
        values = await self.room_values(room_id, since, until)
        values.update(late=late, preview=preview)
        if values["empty"]:
            config = await self.ctx.config(room_id)
            if config.empty_week == "nothing" and not preview:
                return None
            return self.looks.render("quiet", **values)
        return fit_one_message(self.looks.render("digest", **values), self.ctx.prefix)

    async def personal(self, user_id: str, until: datetime, zone: ZoneInfo) -> Rendered | None:
        """One person's open items across all their rooms, for their DM only; None when
        nothing is open (no message rather than an empty one)."""
        since, until = window(until)
        found = await self.ctx.bot.collect_hook(
            "personal_digest_section", None, user_id, since, until
        )
        sections = sections_from(found)
        if not sections:
            return None
        rendered = self.looks.render(
            "personal",
            sections=sections,
            since=day_label(since, zone),
            until=day_label(until - timedelta(seconds=1), zone),
            prefix=self.ctx.prefix,
        )
        return fit_one_message(rendered, self.ctx.prefix)

    async def space(
        self, space_name: str, rooms: list[str], left_out: int, until: datetime, zone: ZoneInfo
    ) -> Rendered:
        since, until = window(until)
        values = [await self.room_values(room, since, until) for room in rooms]
        rendered = self.looks.render(
            "space",
            space_name=space_name,
            rooms=values,
            left_out=left_out,
            since=day_label(since, zone),
            until=day_label(until - timedelta(seconds=1), zone),
            prefix=self.ctx.prefix,
        )
        return fit_one_message(rendered, self.ctx.prefix)
