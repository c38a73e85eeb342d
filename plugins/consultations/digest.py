"""The consultations part of a room's digest and of a person's own digest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from civicbot_plugins.consultations import service
from civicbot_plugins.consultations.service import CLOSED, OPEN

from civicbot.api import (
    DigestSection,
    PublicConsultation,
    PublicSection,
    PublicUpdate,
    format_when,
    matrix_to,
)

# The public page shows this many consultations, newest first (open ones before the rest).
PUBLIC_LIMIT = 200

if TYPE_CHECKING:
    from civicbot_plugins.consultations.models import Consultation
    from civicbot_plugins.consultations.plugin import ConsultationsPlugin


async def room_digest(
    plugin: ConsultationsPlugin, room_id: str, since: datetime, until: datetime
) -> DigestSection | None:
    """Open consultations with their closing dates, responses and updates posted in the
    window, and closed ones waiting too long for a response (with how long). Each links to
    the consultation's post in the room: its thread holds the summary and the responses."""
    zone = await plugin.ctx.timezone(room_id)
    config = await plugin.ctx.config(room_id)
    now = int(until.timestamp())
    rows: list[dict[str, str]] = []
    consultations = await plugin.store.in_room(room_id, limit=200)
    for c in consultations:
        if c.state == OPEN:
            closes = format_when(datetime.fromtimestamp(c.closes_at, UTC), zone, until)
            rest = f" (closes {closes})"
            rows.append(row(room_id, c.root_event, "Open:", c.label, c.title, rest))
    for cid, title, root, u in await plugin.store.updates_between(
        room_id, int(since.timestamp()), int(until.timestamp())
    ):
        what = "Response to" if u.kind == "response" else f"Update ({u.status}) to"
        rows.append(row(room_id, root, what, f"C-{cid}", title, f": {u.text}"))
    for c in consultations:
        if c.state == CLOSED and c.closed_at is not None:
            days = service.days_waiting(c.closed_at, now)
            if days >= config.respond_within_days:
                rest = f", {days} days since it closed ({c.author})"
                rows.append(
                    row(room_id, c.root_event, "Waiting for a response:", c.label, c.title, rest)
                )
    if not rows:
        return None
    rendered = plugin.ctx.render("digest", rows=rows)
    return DigestSection("Consultations", rendered.text, rendered.html)


def row(
    room_id: str, root: str | None, what: str, label: str, title: str, rest: str
) -> dict[str, str]:
    """One line of the digest: ``• {what} {label} {title}{rest}``, with a link to the
    consultation's post (in ``room_id``, where it was posted) once it was posted."""
    link = matrix_to(room_id, root) if root else ""
    return {"what": what, "label": label, "title": title, "rest": rest, "link": link}


async def personal_digest(
    plugin: ConsultationsPlugin, user_id: str, since: datetime, until: datetime
) -> DigestSection | None:
    """Consultations this person answered that got a response or update in the window."""
    answered = set(await plugin.store.answered_by(user_id))
    answered |= set(await plugin.anon.answered_by(user_id))
    lines = []
    for cid in sorted(answered):
        c = await plugin.store.get(cid)
        if c is None:
            continue
        for u in await plugin.store.updates(cid):
            if since.timestamp() <= u.posted_at < until.timestamp():
                what = (
                    "The council responded to"
                    if u.kind == "response"
                    else f"Update ({u.status}) on"
                )
                link = f" {matrix_to(c.room_id, c.root_event)}" if c.root_event else ""
                lines.append(f"• {what} {c.label} {c.title}, which you answered: {u.text}{link}")
    if not lines:
        return None
    return DigestSection("Consultations you answered", "\n".join(lines))


async def public_section(plugin: ConsultationsPlugin, room_id: str) -> PublicSection | None:
    """Consultations for the room's public page: open ones, and for closed ones what was heard
    (the room's own summary: counts only, nothing when it withheld them, never who answered
    what) and the council's response and updates ("you said, we did")."""
    found = []
    all_updates = await plugin.store.updates_in_room(room_id)
    minimum = (await plugin.ctx.config(room_id)).counts_minimum
    for c in await plugin.store.in_room(room_id, limit=PUBLIC_LIMIT):
        respondents: int | None = None
        heard: tuple[str, ...] = ()
        withheld = ""
        if c.state != OPEN:
            respondents, heard, withheld = await _heard(plugin, c, minimum)
        updates = tuple(
            PublicUpdate(u.kind, u.status, u.text, u.author, _utc(u.posted_at))
            for u in all_updates.get(c.id, [])
        )
        found.append(
            PublicConsultation(
                label=c.label,
                title=c.title,
                description=c.description,
                state=c.state_text,
                closes_at=datetime.fromtimestamp(c.closes_at, UTC),
                respondents=respondents,
                heard=heard,
                withheld=withheld,
                updates=updates,
                event_id=c.root_event,
            )
        )
    return PublicSection(consultations=tuple(found)) if found else None


Heard = tuple[int, tuple[str, ...], str]  # respondents, summary lines, why withheld
HEARD_KEPT = 5_000


async def _heard(plugin: ConsultationsPlugin, c: Consultation, minimum: int) -> Heard:
    # Answers can no longer change once a consultation closed (a forgotten person's keep their
    # counts), so each summary is counted once per threshold, not on every page view.
    cache = plugin.heard
    key = (c.id, minimum)
    found = cache.get(key)
    if found is not None:
        return found
    summary, withheld_under = await plugin.runner.summary(c)
    if withheld_under:
        why = (
            f"Fewer than {withheld_under} people answered and the answers are {c.visibility}, "
            "so only the turnout is given."
        )
        found = (summary.people, (), why)
    else:
        found = (summary.people, tuple(heard_lines(summary)), "")
    if len(cache) >= HEARD_KEPT:
        cache.pop(next(iter(cache)))
    cache[key] = found
    return found


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def heard_lines(summary: service.Summary) -> list[str]:
    """The summary's counts as lines: choices, statements, common ground and splits. Free-text
    answers are not quoted (they are in the room's thread, with their authors' consent to that
    room only)."""
    lines = []
    for r in summary.results:
        q = r.question
        if r.statement:
            s = r.statement
            lines.append(f"{q.prompt} — agree {s.agree} · disagree {s.disagree} · pass {s.passed}")
        elif q.kind == "text":
            many = "s" if r.answered != 1 else ""
            lines.append(f"{q.prompt} — {r.answered} written answer{many} (in the room's thread)")
        else:
            counts = ", ".join(f"{o} {n}" for o, n in zip(q.options, r.counts, strict=False))
            lines.append(f"{q.prompt} — {counts}")
    for s in summary.common_ground:
        lines.append(f"Common ground: {s.text} (most {s.verdict})")
    for s in summary.divisive:
        lines.append(f"Splits the room: {s.text}")
    return lines
