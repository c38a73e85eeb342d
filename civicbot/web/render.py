"""HTML for the public pages: one jinja2 environment, autoescaped, templates in this package.

No JavaScript anywhere: every page reads the same with scripts off, and the
Content-Security-Policy (:mod:`civicbot.web.server`) forbids them. The QR code is an inline
SVG made by segno (pure Python, no image library, no network), so the printed noticeboard
and the page need nothing but themselves.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import segno
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from civicbot.core.dates import format_when
from civicbot.web.site import RoomView, upcoming_dates

TEMPLATES = Path(__file__).parent / "templates"
LANG = "en"

# How many of each kind the room's page lists before "all of them" (the archive has them all);
# the noticeboard, one sheet of A4, far fewer.
PAGE_LIMITS = {"meetings": 10, "decisions": 10, "consultations": 8, "offers": 12, "needs": 12}
BOARD_LIMITS = {"meetings": 4, "decisions": 3, "consultations": 2, "offers": 5, "needs": 0}
UNLIMITED = dict.fromkeys(PAGE_LIMITS, 100_000)


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(("html",), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals["lang"] = LANG
    return env


@functools.lru_cache(maxsize=256)
def qr_svg(url: str, label: str) -> Markup:
    """The join link as a QR code, an inline SVG with a text alternative."""
    code = segno.make(url, error="m")
    svg = code.svg_inline(scale=4, title=label, dark="#000", light="#fff", border=2)
    # segno's own SVG: nothing of ours but the URL (encoded as modules) and the escaped label.
    named = f'<svg role="img" aria-label="{Markup.escape(label)}" '
    return Markup(svg.replace("<svg ", named, 1))


class Formatter:
    """Times in the room's zone, as the bot writes them in the room."""

    def __init__(self, zone: str, now: datetime):
        self.zone = ZoneInfo(zone)
        self.now = now

    def when(self, moment: datetime | None) -> str:
        return format_when(moment, self.zone, self.now) if moment else ""

    def day(self, moment: datetime | None) -> str:
        if moment is None:
            return ""
        local = moment.astimezone(self.zone)
        return f"{local:%a} {local.day} {local:%b %Y}"

    def iso(self, moment: datetime | None) -> str:
        return moment.isoformat() if moment else ""


def _values(view: RoomView, base: str, now: datetime, limits: dict[str, int]) -> dict[str, Any]:
    room_url = f"{base}/r/{view.slug}"
    dates = upcoming_dates(view.meetings)
    answered = [c for c in view.consultations if c.updates]
    return {
        "v": view,
        "f": Formatter(view.zone, now),
        "room_url": room_url,
        "feed_url": f"{room_url}/calendar.ics",
        "webcal_url": "webcal://" + f"{room_url}/calendar.ics".split("://", 1)[1],
        "qr": qr_svg(view.join_url, f"QR code: join {view.name} on Matrix"),
        "dates": dates[: limits["meetings"]],
        "more_dates": max(0, len(dates) - limits["meetings"]),
        "decisions": view.decisions[: limits["decisions"]],
        "more_decisions": max(0, len(view.decisions) - limits["decisions"]),
        "consultations": view.consultations[: limits["consultations"]],
        "more_consultations": max(0, len(view.consultations) - limits["consultations"]),
        "answered": answered[: limits["consultations"]],
        "offers": view.offers[: limits["offers"]],
        "more_offers": max(0, len(view.offers) - limits["offers"]),
        "needs": view.needs[: limits["needs"]],
        "more_needs": max(0, len(view.needs) - limits["needs"]),
        "now": now,
    }


def room_page(view: RoomView, base: str, now: datetime, everything: bool = False) -> str:
    limits = UNLIMITED if everything else PAGE_LIMITS
    values = _values(view, base, now, limits)
    return environment().get_template("room.html").render(**values, everything=everything)


def item_page(view: RoomView, item: Any, base: str, now: datetime) -> str:
    values = _values(view, base, now, PAGE_LIMITS)
    return environment().get_template("item.html").render(**values, item=item)


def noticeboard_page(view: RoomView, base: str, now: datetime) -> str:
    values = _values(view, base, now, BOARD_LIMITS)
    return environment().get_template("noticeboard.html").render(**values)


def index_page(rooms: list[tuple[str, str, str]]) -> str:
    """``rooms``: (url, name, topic) of every published room."""
    return environment().get_template("index.html").render(rooms=rooms)


def not_found_page() -> str:
    return environment().get_template("not_found.html").render()


def stylesheet() -> bytes:
    return (TEMPLATES / "site.css").read_bytes()
