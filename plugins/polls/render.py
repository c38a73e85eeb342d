"""What the plugin sends: native poll event contents and the values its templates show.

A closed poll's result is kept as a JSON snapshot (``summarise``), so the results message, ``!poll
show``, the digest and ``!forget me`` all work from the same figures long after the votes behind
them are gone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from civicbot_plugins.polls.models import Poll, is_anonymous, to_iso
from civicbot_plugins.polls.service import (
    BLOCK,
    TIE_RULE,
    PollKind,
    Runoff,
    Tally,
    leaders,
)

from civicbot.clock import ms
from civicbot.dates import describe_delta, format_when

START_TYPE = "org.matrix.msc3381.poll.start"
END_TYPE = "org.matrix.msc3381.poll.end"
TEXT_KEY = "org.matrix.msc1767.text"
DISCLOSED = "org.matrix.msc3381.poll.disclosed"
UNDISCLOSED = "org.matrix.msc3381.poll.undisclosed"

KIND_LINES = {
    PollKind.SINGLE: "Choose one.",
    PollKind.PROPOSAL: "Proposal: agree, abstain, disagree or block.",
    PollKind.RANKED: "Ranked choice, counted by instant runoff.",
}


def has_native_poll(poll: Poll) -> bool:
    """Secret ballots take votes by DM only, and clients cannot rank: those are text-only."""
    return not poll.secret and poll.kind is not PollKind.RANKED


def start_content(poll: Poll) -> dict[str, Any]:
    """``org.matrix.msc3381.poll.start`` as Element Web/X and NeoChat render it."""
    lines = [poll.question, *(f"{n}. {o.text}" for n, o in enumerate(poll.options, start=1))]
    content: dict[str, Any] = {
        TEXT_KEY: "\n".join(lines),
        START_TYPE: {
            "kind": UNDISCLOSED if poll.hidden else DISCLOSED,
            "max_selections": poll.max_selections,
            "question": {TEXT_KEY: f"{poll.question} ({poll.label})"},
            "answers": [{"id": o.id, TEXT_KEY: o.text} for o in poll.options],
        },
    }
    if poll.thread_root:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": poll.thread_root,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": poll.text_event_id or poll.thread_root},
        }
    return content


def end_content(poll: Poll) -> dict[str, Any]:
    return {
        "m.relates_to": {"rel_type": "m.reference", "event_id": poll.start_event_id},
        END_TYPE: {},
        TEXT_KEY: f"{poll.label} has closed; the results follow.",
        "body": f"{poll.label} has closed; the results follow.",
    }


def kind_line(poll: Poll) -> str:
    if poll.kind is PollKind.MULTIPLE:
        return f"Choose up to {poll.max_selections}."
    return KIND_LINES[poll.kind]


def announce_values(poll: Poll, now: datetime, prefix: str, bot: str = "") -> dict[str, Any]:
    return {
        "bot": bot or "the bot",
        "poll": poll,
        "label": poll.label,
        "kind_line": kind_line(poll),
        "closes": format_when(poll.closes_at, poll.zone, now),
        "closes_in": describe_delta(poll.closes_at - now),
        "native": has_native_poll(poll),
        "ranked": poll.kind is PollKind.RANKED,
        "proposal": poll.kind is PollKind.PROPOSAL,
        "example": " ".join(str(n) for n in range(min(3, len(poll.options)), 0, -1)),
        "prefix": prefix,
    }


def summarise(
    poll: Poll,
    tally: Tally,
    members: int | None,
    runoff: Runoff | None = None,
    closed_at: datetime | None = None,
) -> dict[str, Any]:
    """The figures of a poll, JSON-able, for templates and the stored snapshot."""
    voters = tally.voters
    options = []
    for number, option in enumerate(poll.options, start=1):
        count = tally.counts.get(option.id, 0)
        options.append(
            {
                "number": number,
                "id": option.id,
                "text": option.text,
                "count": count,
                "percent": round(100 * count / voters) if voters else 0,
                "fraction": count / voters if voters else 0.0,
            }
        )
    text_of = {o.id: o.text for o in poll.options}
    if runoff is not None:
        winners = [text_of[w] for w in runoff.winners]
        rounds = [
            {
                "number": n,
                "counts": [[text_of[o], c] for o, c in r.counts.items()],
                "exhausted": r.exhausted,
                "eliminated": [text_of[o] for o in r.eliminated],
                "note": r.note,
            }
            for n, r in enumerate(runoff.rounds, start=1)
        ]
    else:
        winners = [text_of[w] for w in leaders(tally.counts)]
        rounds = []
    blocks = []
    if poll.kind is PollKind.PROPOSAL:
        for voter, ballot in tally.ballots.items():
            if BLOCK in ballot:
                # Never a forgotten voter's stand-in: the poll's salt would turn it back.
                shown = None if poll.secret or is_anonymous(voter) else voter
                blocks.append({"voter": shown, "reason": tally.reasons.get(voter, "")})
    return {
        "kind": poll.kind.value,
        "voters": voters,
        "spoiled": tally.spoiled,
        "members": members,
        "turnout": round(100 * voters / members) if members else None,
        "options": options,
        "winners": winners,
        "blocks": blocks,
        "rounds": rounds,
        "tie_rule": TIE_RULE if poll.kind is PollKind.RANKED else "",
        "closed_at": to_iso(closed_at) if closed_at else None,
    }


def headline(poll: Poll, result: dict[str, Any]) -> str:
    winners = result["winners"]
    if not result["voters"]:
        return "Nobody voted."
    if result.get("withheld"):  # see secret.withhold_small_result
        return (
            f"Fewer than {result['withheld']} people voted, so only the turnout is published: "
            "the counts would show how each of them voted."
        )
    if poll.kind is PollKind.PROPOSAL:
        blocks = len(result["blocks"])
        said = " and ".join(winners)
        lead = f"Most said: {said}." if len(winners) == 1 else f"Tied between {said}."
        if blocks:
            return f"⛔ Blocked: {blocks} block{'s' if blocks != 1 else ''} raised. {lead}"
        return f"No blocks. {lead}"
    if poll.kind is PollKind.RANKED:
        rounds = len(result["rounds"])
        after = f" after {rounds} round{'s' if rounds != 1 else ''}" if rounds else ""
        if len(winners) == 1:
            return f"Winner: {winners[0]}{after}."
        if not winners:
            return "No option had any votes."
        return f"Tie between {_join(winners)}{after}."
    if len(winners) == 1:
        return f"Winner: {winners[0]}."
    return f"Tie between {_join(winners)}."


def turnout_line(result: dict[str, Any]) -> str:
    voters = result["voters"]
    people = f"{voters} {'person' if voters == 1 else 'people'} voted"
    if result.get("members"):
        people += f" of {result['members']} members ({result['turnout']}%)"
    if result.get("spoiled"):
        people += f"; {result['spoiled']} spoiled"
    return people + "."


def result_values(poll: Poll, result: dict[str, Any], prefix: str, now: datetime) -> dict[str, Any]:
    closed = result.get("closed_at")
    return {
        "poll": poll,
        "label": poll.label,
        "r": result,
        "headline": headline(poll, result),
        "turnout": turnout_line(result),
        "closed": format_when(poll.closed_at or now, poll.zone, now) if closed else "",
        "ranked": poll.kind is PollKind.RANKED,
        "prefix": prefix,
    }


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def describe_choice(poll: Poll, answers: list[str]) -> str:
    """``2. Saturday`` / ``1. Birds, then 3. Bikes`` / ``Agree``: a vote read back to its voter."""
    numbers = {o.id: n for n, o in enumerate(poll.options, start=1)}
    text_of = {o.id: o.text for o in poll.options}
    if poll.kind is PollKind.PROPOSAL:
        return ", ".join(text_of[a] for a in answers)
    parts = [f"{numbers[a]}. {text_of[a]}" for a in answers]
    return ", then ".join(parts) if poll.kind is PollKind.RANKED else ", ".join(parts)


def late_vote_refusal(poll: Poll, sent_ms: int, now: datetime, prefix: str) -> str | None:
    """Why a typed vote sent at ``sent_ms`` can't count, or None when it can. A typed vote counts
    by when it was sent (its event's timestamp), as a button vote does, not by when we read it.

    Sent after the deadline: refused, even if the poll is still waiting to be closed (as after
    downtime). Sent in time but read only after the close (a slow catch-up, or a server that
    federates late): refused too, and the voter is told so plainly. Clients would count a button
    vote like that (its timestamp is before the end event's), but by then the result has been
    posted and recorded, and a count that changed afterwards would disagree with both. Overdue
    polls close only once the backlog has been read (``caught_up``), so this stays rare."""
    if poll.is_open:
        if sent_ms <= ms(poll.closes_at):
            return None
        when = format_when(poll.closes_at, poll.zone, now)
        return f"Voting in {poll.label} closed at {when}, so that vote was not counted."
    closed = f"Voting in {poll.label} has closed, so that vote was not counted."
    show = f"{prefix}poll show {poll.label} shows the result."
    cutoff = poll.cutoff_ts
    if cutoff is None and poll.closed_at is not None:
        cutoff = ms(poll.closed_at)
    if cutoff is not None and 0 < sent_ms <= cutoff:
        return (
            f"{closed} You sent it in time, but it reached me only after the results had been "
            f"counted and posted. {show}"
        )
    return f"{closed} {show}"
