"""The digest's pure parts: when a room's digest is due, which week it is, what goes in it, and
whether rendered HTML stays within what Matrix clients show. No Matrix, no database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

from civicbot.api import DigestSection, matrix_to

WEEK = timedelta(days=7)
# DESIGN.md §4: what Matrix clients render in formatted_body.
ALLOWED_TAGS = frozenset(
    "p br b strong i em u s del code pre blockquote ul ol li h1 h2 h3 h4 h5 h6 hr "
    "table thead tbody tfoot tr th td caption a span details summary".split()
)
ALLOWED_SCHEMES = ("http://", "https://", "mailto:")


def latest_slot(weekday: int, hour: int, minute: int, zone: ZoneInfo, at: datetime) -> datetime:
    """The most recent weekly slot (``weekday`` at ``hour:minute`` in ``zone``) at or before
    ``at``, in UTC. Built from the wall clock each time, so it stays at 18:00 across DST."""
    local = at.astimezone(zone)
    day = local.date() - timedelta(days=(local.weekday() - weekday) % 7)
    slot = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
    if slot > at:
        day -= WEEK
        slot = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
    return slot.astimezone(UTC)


def next_slot(weekday: int, hour: int, minute: int, zone: ZoneInfo, at: datetime) -> datetime:
    """The first slot strictly after ``at`` (for "the next digest is on …")."""
    day = latest_slot(weekday, hour, minute, zone, at).astimezone(zone).date() + WEEK
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)


def through(now: datetime) -> datetime:
    """The end of the second ``now`` falls in: the end of a window that must hold everything
    done until now. Plugins store times to the whole second (cut down), so a window ending at
    ``now`` itself leaves out what was made earlier in the same second (a poll, then at once
    ``!digest preview``)."""
    return now.replace(microsecond=0) + timedelta(seconds=1)


def week_key(slot: datetime, zone: ZoneInfo) -> str:
    """The ISO week of the slot's local date, ``2026-W49``: one digest per room per week."""
    year, week, _ = slot.astimezone(zone).isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True)
class Thread:
    root: str
    replies: int
    link: str


@dataclass(frozen=True)
class WeekNumbers:
    """The room's week in numbers. Counts only: nobody's words or name."""

    messages: int = 0
    new_members: int = 0
    threads: tuple[Thread, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.messages or self.new_members or self.threads)


@dataclass
class DigestValues:
    """What the digest templates are given."""

    room_id: str
    week: str
    since: str
    until: str
    sections: list[DigestSection]
    numbers: WeekNumbers
    late: bool = False
    preview: bool = False
    room_name: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.sections and self.numbers.empty


def ordered_sections(found: Sequence[tuple[str, object]]) -> list[DigestSection]:
    """Plugins' sections with something in them, in their declared order (then by plugin name,
    so the order never depends on load order)."""
    sections = [
        (s.order, name, s)
        for name, s in found
        if isinstance(s, DigestSection) and (s.text.strip() or (s.html or "").strip())
    ]
    return [s for _, _, s in sorted(sections, key=lambda t: (t[0], t[1]))]


def busiest(replies: dict[str, int], room_id: str, limit: int) -> tuple[Thread, ...]:
    """The ``limit`` threads with most replies (ties: the older root id first, stable)."""
    top = sorted(replies.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return tuple(Thread(root, n, matrix_to(room_id, root)) for root, n in top if n > 0)


class _TagCheck(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"<{tag}> is not a tag Matrix clients show")
        for name, value in attrs:
            if tag == "a" and name == "href" and not (value or "").startswith(ALLOWED_SCHEMES):
                self.problems.append(f"a link to '{value}' (only http, https and mailto work)")


def html_problems(html: str) -> list[str]:
    """What in ``html`` Matrix clients would drop or refuse (empty when all is well)."""
    check = _TagCheck()
    check.feed(html)
    check.close()
    return sorted(set(check.problems))
