"""Counting votes: plain functions with no Matrix and no database in them.

The tally follows the rules every Matrix client applies to ``org.matrix.msc3381.poll.*`` events
(matrix-js-sdk ``Poll`` and matrix-events-sdk ``PollResponseEvent``), so the bot's result equals
what Element shows for the same responses:

- only responses sent on or before the end event's ``origin_server_ts`` count;
- the latest response of each sender (by ``origin_server_ts``) replaces the earlier ones;
- a response whose answers are not a non-empty list of strings, or that names an answer the poll
  does not have, is *spoiled*: it replaces the sender's earlier vote and counts for nothing (an
  empty list is how a client withdraws a vote);
- answers beyond ``max_selections`` are cut off.

One deliberate difference: an answer repeated within one response counts once (Element's UI
never sends repeats; counting them twice would let one person vote twice).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class PollKind(StrEnum):
    SINGLE = "single"
    MULTIPLE = "multiple"
    PROPOSAL = "proposal"
    RANKED = "ranked"


@dataclass(frozen=True, slots=True)
class Option:
    id: str
    text: str


PROPOSAL_OPTIONS = (
    Option("agree", "Agree"),
    Option("abstain", "Abstain"),
    Option("disagree", "Disagree"),
    Option("block", "Block"),
)
BLOCK = "block"

TIE_RULE = (
    "Each round the option with the fewest votes is eliminated and its ballots move to their "
    "next choice, until one option has more than half of the ballots still in play. A tie for "
    "fewest is broken by the counts of the earlier rounds, latest first, then by a draw seeded "
    "with the poll number (so anyone can repeat it). If every remaining option has the same "
    "number of votes, the result is a tie."
)


class Response(NamedTuple):
    """One poll response as the homeserver stored it (or one ``!vote``). A tuple, because a
    tally reads a hundred thousand of them and a dataclass costs several times as much to build."""

    voter: str
    answers: object  # as sent: a list of answer ids when well-formed
    ts: int
    reason: str = ""


@dataclass
class Tally:
    """Who counted for what after applying the client rules."""

    counts: dict[str, int]  # option id -> voters choosing it (first preferences when ranked)
    ballots: dict[str, tuple[str, ...]]  # voter (or anonymous key) -> answers that count
    spoiled: int = 0
    reasons: dict[str, str] = field(default_factory=dict)  # voter -> reason given with the vote

    @property
    def voters(self) -> int:
        return len(self.ballots)


def latest_responses(
    responses: Iterable[Response], cutoff_ts: int | None = None
) -> dict[str, Response]:
    """Each sender's latest response on or before ``cutoff_ts`` (ties: the first one seen)."""
    latest: dict[str, Response] = {}
    for response in responses:
        if cutoff_ts is not None and response.ts > cutoff_ts:
            continue
        previous = latest.get(response.voter)
        if previous is None or previous.ts < response.ts:
            latest[response.voter] = response
    return latest


def valid_answers(
    answers: object, option_ids: frozenset[str], limit: int
) -> tuple[str, ...] | None:
    """The answers that count, or None when the response is spoiled (or withdrawn)."""
    if not isinstance(answers, list) or not answers:
        return None
    for answer in answers:
        if not isinstance(answer, str) or answer not in option_ids:
            return None
    return tuple(dict.fromkeys(answers[:limit]))


def tally_responses(
    responses: Iterable[Response],
    option_ids: Sequence[str],
    max_selections: int,
    cutoff_ts: int | None = None,
    ranked: bool = False,
) -> Tally:
    """Count ``responses`` the way Matrix clients do (see the module docstring). For a ranked
    poll ``counts`` holds first preferences; the runoff reads the whole ballots."""
    known = frozenset(option_ids)
    counts = dict.fromkeys(option_ids, 0)
    ballots: dict[str, tuple[str, ...]] = {}
    reasons: dict[str, str] = {}
    spoiled = 0
    for voter, response in latest_responses(responses, cutoff_ts).items():
        answers = valid_answers(response.answers, known, max_selections)
        if answers is None:
            if response.answers != []:  # an empty list withdraws; anything else is spoiled
                spoiled += 1
            continue
        ballots[voter] = answers
        if response.reason:
            reasons[voter] = response.reason
        for answer in answers[:1] if ranked else answers:
            counts[answer] += 1
    return Tally(counts, ballots, spoiled, reasons)


def count_ballots(
    ballots: Iterable[tuple[Sequence[str], str]], option_ids: Sequence[str], ranked: bool = False
) -> Tally:
    """Count already-validated anonymous ``(answers, reason)`` ballots (secret polls). Ranked
    ballots count their first preference in ``counts``; the runoff uses the whole ballot."""
    counts = dict.fromkeys(option_ids, 0)
    kept: dict[str, tuple[str, ...]] = {}
    reasons: dict[str, str] = {}
    for index, (ballot, reason) in enumerate(ballots):
        choices = tuple(a for a in dict.fromkeys(ballot) if a in counts)
        if not choices:
            continue
        key = f"ballot-{index}"
        kept[key] = choices
        if reason:
            reasons[key] = reason
        for answer in choices[:1] if ranked else choices:
            counts[answer] += 1
    return Tally(counts, kept, 0, reasons)


def leaders(counts: dict[str, int]) -> list[str]:
    """The options with the most votes (several on a tie; none when nobody voted)."""
    top = max(counts.values(), default=0)
    return [option for option, count in counts.items() if count == top] if top else []


# -- instant runoff ------------------------------------------------------------------------------
@dataclass
class Round:
    counts: dict[str, int]
    exhausted: int
    eliminated: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class Runoff:
    winners: list[str]  # one winner, several on a tie, none without ballots
    rounds: list[Round]

    @property
    def tie(self) -> bool:
        return len(self.winners) > 1


def instant_runoff(
    ballots: Iterable[Sequence[str]], option_ids: Sequence[str], seed: int = 0
) -> Runoff:
    """Instant-runoff count of ranked ``ballots`` with the tie rule in :data:`TIE_RULE`."""
    papers = [tuple(b) for b in ballots if b]
    continuing = list(option_ids)
    rounds: list[Round] = []
    while True:
        counts = dict.fromkeys(continuing, 0)
        exhausted = 0
        for paper in papers:
            for choice in paper:
                if choice in counts:
                    counts[choice] += 1
                    break
            else:
                exhausted += 1
        current = Round(counts, exhausted)
        rounds.append(current)
        active = sum(counts.values())
        if active == 0:
            return Runoff([], rounds)
        top = max(counts.values())
        if top * 2 > active:
            winner = next(o for o in continuing if counts[o] == top)
            current.note = f"majority: {top} of {active}"
            return Runoff([winner], rounds)
        lowest = min(counts.values())
        tied = [o for o in continuing if counts[o] == lowest]
        if len(tied) == len(continuing):
            current.note = "every remaining option has the same number of votes"
            return Runoff(list(continuing), rounds)
        if lowest == 0:
            # Options nobody ranked carry no ballots to transfer: drop them together.
            out, current.note = tied, "nobody's current choice"
        else:
            loser, current.note = _break_tie(tied, rounds[:-1], seed, len(rounds))
            out = [loser]
        current.eliminated = out
        continuing = [o for o in continuing if o not in out]


def _break_tie(
    tied: list[str], earlier: list[Round], seed: int, round_number: int
) -> tuple[str, str]:
    if len(tied) == 1:
        return tied[0], "fewest votes"
    candidates = list(tied)
    for back, previous in enumerate(reversed(earlier), start=1):
        fewest = min(previous.counts.get(o, 0) for o in candidates)
        candidates = [o for o in candidates if previous.counts.get(o, 0) == fewest]
        if len(candidates) == 1:
            return candidates[0], f"tie for fewest, broken by round {round_number - back}"
    draw = random.Random(f"civicbot-poll-{seed}-round-{round_number}")
    return draw.choice(sorted(candidates)), "tie for fewest, broken by the seeded draw"
