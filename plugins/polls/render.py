"""What the plugin sends: native poll event contents and the values its templates show.

A closed poll's result is kept as a JSON snapshot (``summarise``), so the results message, ``!poll
show``, the digest and ``!forget me`` all work from the same figures long after the votes behind
them are gone. Instants are stored in UTC and every time is shown in the ``zone`` the caller
passes: the room's zone as it is now (or, in a direct message, the reader's), never the zone the
poll happened to be made in.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from civicbot_plugins.polls.models import Poll, is_anonymous, to_iso
from civicbot_plugins.polls.service import (
    BLOCK,
    PROPOSAL_RULE,
    TIE_RULE,
    PollKind,
    ProposalOutcome,
    Runoff,
    Tally,
    decide_proposal,
    leaders,
)

from civicbot.api import (
    POLL_DISCLOSED,
    POLL_END_TYPE,
    POLL_START_TYPE,
    POLL_TEXT_KEY,
    POLL_UNDISCLOSED,
    describe_delta,
    format_when,
    poll_end_content,
)

# The MSC3381 names, as this module has always called them.
DISCLOSED = POLL_DISCLOSED
END_TYPE = POLL_END_TYPE
START_TYPE = POLL_START_TYPE
TEXT_KEY = POLL_TEXT_KEY
UNDISCLOSED = POLL_UNDISCLOSED

KIND_LINES = {
    PollKind.SINGLE: "Choose one.",
    PollKind.PROPOSAL: (
        "Proposal: agree, abstain, disagree or block. It is agreed if nobody blocks and more "
        "people agree than disagree."
    ),
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


RESULTS_KEY = "m.poll.results"  # MSC3381: the poll sender's count, answer id -> votes


def end_content(poll: Poll, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """The end of the native poll; ``counts`` (answer id → votes) go in as MSC3381's
    ``m.poll.results`` (a ranked poll's first preferences are not its result: left out)."""
    assert poll.start_event_id is not None
    content = poll_end_content(poll.start_event_id, f"{poll.label} has closed; the results follow.")
    if counts is not None and poll.kind is not PollKind.RANKED:
        content[RESULTS_KEY] = {o.id: counts.get(o.id, 0) for o in poll.options}
    return content


def kind_line(poll: Poll) -> str:
    if poll.kind is PollKind.MULTIPLE:
        return f"Choose up to {poll.max_selections}."
    return KIND_LINES[poll.kind]


def closes_in(poll: Poll, now: datetime) -> str:
    """``in 10 minutes`` for a poll that closes in 10 minutes, although a few milliseconds have
    passed since it was made: rounded to the minute, not cut down to 9."""
    seconds = round((poll.closes_at - now).total_seconds() / 60) * 60
    return describe_delta(timedelta(seconds=seconds))


def announce_values(
    poll: Poll, now: datetime, prefix: str, zone: ZoneInfo, bot: str = ""
) -> dict[str, Any]:
    return {
        "bot": bot or "the bot",
        "poll": poll,
        "label": poll.label,
        "kind_line": kind_line(poll),
        "closes": format_when(poll.closes_at, zone, now),
        "closes_in": closes_in(poll, now),
        "native": has_native_poll(poll),
        "ranked": poll.kind is PollKind.RANKED,
        "proposal": poll.kind is PollKind.PROPOSAL,
        "example": " ".join(str(n) for n in range(min(3, len(poll.options)), 0, -1)),
        "prefix": prefix,
        "edited": False,
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
        "repeated": tally.repeated,
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
        return proposal_headline(result)
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


OUTCOME_MARKS = {
    ProposalOutcome.AGREED: "✅ Agreed",
    ProposalOutcome.NOT_AGREED: "❌ Not agreed",
    ProposalOutcome.BLOCKED: "⛔ Blocked",
}


def proposal_headline(result: dict[str, Any]) -> str:
    """``⛔ Blocked: 1 block (listed first). 2 agree, 0 abstain, 1 disagree.`` From the
    snapshot's counts, so results stored before this rule existed read the same way."""
    counts = {o["id"]: o["count"] for o in result["options"]}
    outcome = decide_proposal(counts)
    blocks = counts.get(BLOCK, 0)
    tally = ", ".join(f"{counts.get(p, 0)} {p}" for p in ("agree", "abstain", "disagree"))
    if outcome is ProposalOutcome.BLOCKED:
        listed = "listed first below" if result.get("blocks") else "reasons kept private"
        return f"⛔ Blocked: {blocks} block{'s' if blocks != 1 else ''} ({listed}). {tally}."
    return f"{OUTCOME_MARKS[outcome]}: {tally}; no blocks."


def percent_note(poll: Poll, result: dict[str, Any]) -> str:
    """Percentages are of the people who voted; where each could choose several they add up to
    more than 100%, which reads like a mistake unless it is said."""
    if poll.kind is not PollKind.MULTIPLE:
        return ""
    # Someone chose more than one (not the rounding of single picks, which can make 101%).
    if sum(o["count"] for o in result["options"]) <= result["voters"]:
        return ""
    voters = result["voters"]
    return (
        f"Percentages are of the {voters} {'person' if voters == 1 else 'people'} who voted; "
        f"each could choose up to {poll.max_selections}, so they add up to more than 100%."
    )


def turnout_line(result: dict[str, Any]) -> str:
    voters = result["voters"]
    people = f"{voters} {'person' if voters == 1 else 'people'} voted"
    if result.get("members"):
        people += f" of {result['members']} members ({result['turnout']}%)"
    if result.get("spoiled"):
        people += f"; {result['spoiled']} spoiled"
    repeated = result.get("repeated") or 0
    if repeated:
        # Element counts a response naming an option twice as two votes for it; one person
        # is one vote for an option here, and the results say why the two counts differ.
        people += (
            f". {repeated} vote{'s' if repeated != 1 else ''} named the same option twice: "
            "counted once here, though Element's own count shows it twice"
        )
    return people + "."


def result_values(
    poll: Poll, result: dict[str, Any], prefix: str, now: datetime, zone: ZoneInfo
) -> dict[str, Any]:
    closed = result.get("closed_at")
    proposal = poll.kind is PollKind.PROPOSAL
    return {
        "poll": poll,
        "label": poll.label,
        "r": result,
        "headline": headline(poll, result),
        "rule": PROPOSAL_RULE if proposal and result["voters"] else "",
        "note": percent_note(poll, result),
        "turnout": turnout_line(result),
        "closed": format_when(poll.closed_at or now, zone, now) if closed else "",
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


def superseded_content(old_start: str, label: str, link: str) -> dict[str, Any]:
    """The end of a native poll that ``!poll edit`` replaced by a new one: Element never re-reads
    an edited poll (element-web#26516), so the old one is ended, saying why and where the new
    one is."""
    text = f"{label} was changed before anyone voted, so this poll is closed. Vote here: {link}"
    return poll_end_content(old_start, text)
