"""What the polls plugin reports: ``!poll show``, ``!polls``, the digest section, ``!mydata``
and ``!forget me``. Times are shown in the ``zone`` given: the reader's room as it is now."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from civicbot_plugins.polls import render
from civicbot_plugins.polls.lifecycle import PollRunner
from civicbot_plugins.polls.models import CLOSED, Poll, to_iso
from civicbot_plugins.polls.store import PollStore

from civicbot.api import (
    ForgetReport,
    PluginContext,
    PublicCount,
    PublicDecision,
    PublicSection,
    TransportError,
    format_when,
    matrix_to,
)

# A digest lists this many of each kind of poll, then says how many more: a weekly summary
# of a busy room stays readable (and one message, which Matrix caps at 64 KiB).
DIGEST_LIMIT = 12


async def digest_values(
    store: PollStore,
    runner: PollRunner,
    room_id: str,
    since: datetime,
    until: datetime,
    now: datetime,
    prefix: str,
    zone: ZoneInfo,
) -> dict[str, Any] | None:
    """Polls decided (with results and outcomes), opened, and outcomes recorded in the window."""
    window = (to_iso(since), to_iso(until))
    closed = [
        p
        for p in await store.in_room_between(room_id, "closed_at", *window)
        if p.state == CLOSED and p.result
    ]
    closed_ids = {p.id for p in closed}
    opened = [
        p
        for p in await store.in_room_between(room_id, "created_at", *window)
        if p.id not in closed_ids
    ]
    decided = [
        p
        for p in await store.in_room_between(room_id, "outcome_at", *window)
        if p.id not in closed_ids
    ]
    if not (opened or closed or decided):
        return None
    voters = await runner.voters_of(opened)
    return {
        "opened": [
            {
                **render.announce_values(p, now, prefix, zone),
                "voters": voters[p.id],
                "link": _link(room_id, p.start_event_id, p.text_event_id),
            }
            for p in opened
        ],
        "closed": [
            {
                **render.result_values(p, p.result or {}, prefix, now, zone),
                "link": _link(room_id, p.results_event_id, p.start_event_id, p.text_event_id),
            }
            for p in closed
        ],
        "decided": [
            {
                "poll": p,
                "label": p.label,
                "link": _link(room_id, p.results_event_id, p.start_event_id, p.text_event_id),
            }
            for p in decided
        ],
        "prefix": prefix,
        "limit": DIGEST_LIMIT,
    }


def _link(room_id: str, *event_ids: str | None) -> str:
    """A link to the first of ``event_ids`` the bot posted (its results, else the poll itself),
    or "" for a poll that never reached the room. Always in ``room_id``, the digest's room:
    every poll it lists was asked there."""
    event_id = next((e for e in event_ids if e), None)
    return matrix_to(room_id, event_id) if event_id else ""


async def unvoted_rows(
    store: PollStore, ctx: PluginContext[Any], user_id: str, now: datetime, prefix: str
) -> list[dict[str, Any]]:
    """One row per open poll in a room where polls are on and ``user_id`` is a member, that
    they have not voted in (a public poll's latest answer is empty or missing; a secret
    ballot's voter list does not name them). Soonest to close first."""
    polls = []
    for poll in await store.open_anywhere():
        if not (await ctx.config(poll.room_id)).enabled:
            continue
        try:
            members = await ctx.rooms.joined_members(poll.room_id)
        except TransportError:
            continue  # the room is unreachable now; next week's digest will say
        if user_id in members:
            polls.append(poll)
    answers = await store.latest_answers_of(user_id, [p.id for p in polls if not p.secret])
    rows = []
    for poll in polls:
        voted = await store.secret.has_voted(poll, user_id) if poll.secret else bool(
            answers.get(poll.id)
        )  # fmt: skip
        if voted:
            continue
        zone = await ctx.timezone(poll.room_id)
        event = poll.start_event_id or poll.text_event_id
        rows.append({
            "label": poll.label,
            "question": poll.question,
            "closes": format_when(poll.closes_at, zone, now),
            "secret": poll.secret,
            "link": matrix_to(poll.room_id, event) if event else matrix_to(poll.room_id),
        })  # fmt: skip
    return rows


async def export_user_data(store: PollStore, user_id: str) -> dict[str, Any] | None:
    """Everything stored about ``user_id``: polls they started, closed or decided, their votes,
    and which secret ballots they took part in (never what they chose there)."""
    started = [
        {
            "poll": p.label,
            "room": p.room_id,
            "question": p.question,
            "started": to_iso(p.created_at) if p.creator == user_id else None,
            "closed": to_iso(p.closed_at) if p.closed_by == user_id and p.closed_at else None,
            "outcome_recorded": p.outcome if p.outcome_by == user_id else None,
        }
        for p in await store.created_by(user_id)
    ]
    votes = []
    for row in await store.responses_of(user_id):
        poll = await store.get(row["poll_id"])
        text_of = {o.id: o.text for o in poll.options} if poll else {}
        answers = row["answers"]
        listed = [a for a in answers if isinstance(a, str)] if isinstance(answers, list) else []
        votes.append(
            {
                "poll": f"P-{row['poll_id']}",
                "question": poll.question if poll else "",
                "answers": answers,
                "answer_texts": [text_of.get(a, a) for a in listed],
                "sent_at_ms": row["ts"],
                "via": row["via"],
                "reason": row["reason"],
            }
        )
    secret = [
        {
            "poll": f"P-{poll_id}",
            "note": "You voted in this secret ballot. Your choice is stored without your name, "
            "so it cannot be exported.",
        }
        for poll_id in await store.secret.polls_of(user_id)
    ]
    if not (started or votes or secret):
        return None
    return {"polls_started_or_decided": started, "votes": votes, "secret_ballots": secret}


async def list_values(
    runner: PollRunner, polls: list[Poll], now: datetime, prefix: str, zone: ZoneInfo
) -> dict[str, Any]:
    """``!polls``: every row in the reader's ``zone``."""
    rows = [
        {
            "poll": poll,
            "label": poll.label,
            "closes": format_when(poll.closes_at, zone, now),
            "voters": await runner.voters_so_far(poll),
            "kind": render.kind_line(poll),
        }
        for poll in polls
    ]
    return {"rows": rows, "prefix": prefix}


async def show_values(
    store: PollStore,
    runner: PollRunner,
    poll: Poll,
    now: datetime,
    prefix: str,
    zone: ZoneInfo,
    bot: str,
) -> tuple[str, dict[str, Any]]:
    """``!poll show``: the template to render and its values (the result once closed, the
    count so far while open, a line saying so once cancelled)."""
    if poll.is_cancelled:
        when = format_when(poll.closed_at or now, zone, now)
        return "cancelled", {"poll": poll, "label": poll.label, "when": when}
    values = render.announce_values(poll, now, prefix, zone, bot)
    if poll.state == CLOSED and poll.result:
        values.update(render.result_values(poll, poll.result, prefix, now, zone))
        values["closed_now"] = True
        return "show", values
    tally = await runner.live_tally(poll)
    result = render.summarise(poll, tally, None)
    values.update(render.result_values(poll, result, prefix, now, zone))
    values["voters"] = await store.secret.voter_count(poll.id) if poll.secret else tally.voters
    values["closed_now"] = False
    return "show", values


def forget_report(removed: int, anonymised: int) -> ForgetReport | None:
    if not (removed or anonymised):
        return None
    return ForgetReport(
        removed=removed,
        anonymised=anonymised,
        notes=[
            "Poll totals are kept; who voted for what is removed. Votes given with a poll's "
            "buttons or typed in a room are room events: a moderator can redact them."
        ],
    )


async def public_section(
    store: PollStore, room_id: str, made: dict[int, tuple[str, PublicDecision]]
) -> PublicSection | None:
    """Decided polls for the room's public page: the result as it was posted in the room
    (a small secret ballot's turnout only, never who voted), and the outcome recorded. A
    closed poll's result never changes, so each is read once and kept in ``made`` until its
    outcome is recorded: a year of decisions costs one small query, not 500 polls read."""
    decisions = []
    for poll_id, version in await store.decided_in(room_id):
        kept = made.get(poll_id)
        if kept is None or kept[0] != version:
            poll = await store.get(poll_id)
            if poll is None:
                continue
            kept = (version, public_decision(poll))
            made[poll_id] = kept
        decisions.append(kept[1])
    return PublicSection(decisions=tuple(decisions)) if decisions else None


def public_decision(poll: Poll) -> PublicDecision:
    """One decided poll as the public page shows it."""
    result = poll.result or {}
    winners = set(result.get("winners", []))
    counts = tuple(
        PublicCount(o["text"], o["count"], o["percent"], o["text"] in winners)
        for o in result.get("options", [])
    )
    return PublicDecision(
        label=poll.label,
        question=poll.question,
        decided_at=poll.closed_at or poll.closes_at,
        headline=render.headline(poll, result),
        turnout=render.turnout_line(result),
        counts=counts,
        outcome=poll.outcome or "",
        outcome_at=poll.outcome_at,
        event_id=poll.results_event_id or poll.start_event_id or poll.text_event_id,
    )
