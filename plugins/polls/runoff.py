"""Instant runoff for ranked-choice polls: a plain function and the tie rule it applies."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

TIE_RULE = (
    "Each round the option with the fewest votes is eliminated and its ballots move to their "
    "next choice, until one option has more than half of the ballots still in play. A tie for "
    "fewest is broken by the counts of the earlier rounds, latest first, then by a draw seeded "
    "with the poll number (so anyone can repeat it). If every remaining option has the same "
    "number of votes, the result is a tie."
)


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
