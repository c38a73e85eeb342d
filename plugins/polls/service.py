"""The voting rules: counting, deciding, and who may vote, change or cancel what, where and
when. Plain functions with no Matrix and no database in them (they return what to say; the
handlers in :mod:`plugin` send it).

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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple
from zoneinfo import ZoneInfo

# Ranked ballots are counted in runoff.py; re-exported so callers find every rule here.
from civicbot_plugins.polls.runoff import TIE_RULE as TIE_RULE
from civicbot_plugins.polls.runoff import Round as Round
from civicbot_plugins.polls.runoff import Runoff as Runoff
from civicbot_plugins.polls.runoff import instant_runoff as instant_runoff

from civicbot.api import format_when, ms

if TYPE_CHECKING:
    from civicbot_plugins.polls.models import Poll


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


class ProposalOutcome(StrEnum):
    """A proposal's result in Loomio's terms."""

    AGREED = "agreed"
    NOT_AGREED = "not agreed"
    BLOCKED = "blocked"


PROPOSAL_RULE = (
    "A proposal is agreed when nobody blocks and more people agree than disagree; abstentions "
    "count for neither side. A single block stops it: the group talks the concern through first."
)


def decide_proposal(counts: Mapping[str, int]) -> ProposalOutcome:
    """Blocked by any block; otherwise agreed by more agree than disagree (see the rule)."""
    if counts.get(BLOCK, 0):
        return ProposalOutcome.BLOCKED
    if counts.get("agree", 0) > counts.get("disagree", 0):
        return ProposalOutcome.AGREED
    return ProposalOutcome.NOT_AGREED


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
    # Counted votes that named one option twice (``["1", "1"]``): counted once here, while
    # Element's count (matrix-events-sdk keeps duplicates) shows them twice; the results say so.
    repeated: int = 0

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
    spoiled = repeated = 0
    for voter, response in latest_responses(responses, cutoff_ts).items():
        answers = valid_answers(response.answers, known, max_selections)
        if answers is None:
            if response.answers != []:  # an empty list withdraws; anything else is spoiled
                spoiled += 1
            continue
        sent = response.answers
        if not ranked and isinstance(sent, list) and len(answers) < len(sent[:max_selections]):
            repeated += 1
        ballots[voter] = answers
        if response.reason:
            reasons[voter] = response.reason
        for answer in answers[:1] if ranked else answers:
            counts[answer] += 1
    return Tally(counts, ballots, spoiled, reasons, repeated)


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


# -- who may do what, where and when ------------------------------------------------------------
# Each rule returns the reply that refuses, or None when the action may go ahead.
def create_refusal(level: int, create_level: int, moderator: bool) -> str | None:
    """A room may reserve starting polls to a power level; its moderators always may."""
    if level >= create_level or moderator:
        return None
    return (
        f"In this room only people with power level {create_level} or more can start polls. "
        "Ask a moderator to start this one."
    )


def vote_place_refusal(poll: Poll, in_poll_room: bool, direct: bool, prefix: str) -> str | None:
    """Open votes are given in the poll's room or in a direct message, never in a third room
    whose members would see them; secret ballots only in a direct message."""
    if poll.secret:
        if in_poll_room or not direct:
            return (
                f"{poll.label} is a secret ballot, so please don't vote here: send your vote to "
                f"me in a direct message instead ({prefix}vote {poll.label} <number>). "
                "Only the totals will be published."
            )
        return None
    if not in_poll_room and not direct:
        return (
            f"{poll.label} is a poll in another room, so I haven't counted that vote here. "
            f"Vote in the poll's room, or send {prefix}vote {poll.label} <number> to me "
            "in a direct message."
        )
    return None


def withdraw_refusal(poll: Poll, answers: Sequence[str]) -> str | None:
    if poll.secret and not answers:
        return (
            "A secret ballot can't be withdrawn or changed once cast: I keep no record of "
            "which ballot is yours."
        )
    return None


def late_vote_refusal(
    poll: Poll, sent_ms: int, now: datetime, prefix: str, zone: ZoneInfo
) -> str | None:
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
        when = format_when(poll.closes_at, zone, now)
        return f"Voting in {poll.label} closed at {when}, so that vote was not counted."
    if poll.is_cancelled:
        return f"{poll.label} was cancelled, so there is nothing to vote on."
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


def counted_reply(poll: Poll, chosen: str, now: datetime, zone: ZoneInfo) -> str:
    """What a voter is told once a typed vote counts (``chosen`` is it read back, or "")."""
    until = format_when(poll.closes_at, zone, now)
    # Read from the backlog after the deadline (sent before it): no more changes.
    still_open = now < poll.closes_at
    if not chosen:
        again = f" You can vote again until {until}." if still_open else ""
        return f"Your vote in {poll.label} is withdrawn.{again}"
    again = f" You can change it until {until}." if still_open else ""
    return f"✅ Counted: your vote in {poll.label} is {chosen}.{again}"


def close_refusal(
    poll: Poll, may_manage: bool, replayed: bool, prefix: str, now: datetime, zone: ZoneInfo
) -> str | None:
    """Its creator or a moderator may close an open poll early. The same ``!poll close`` again,
    replayed after a crash, does what it did the first time. A poll that is over says so to
    anyone (its results are in the room), rather than when it "closes by itself"."""
    if poll.is_cancelled:
        return f"{poll.label} was cancelled, so it has no results to close with."
    if not poll.is_open and not replayed:
        return f"{poll.label} has already closed. {prefix}poll show {poll.label} shows the result."
    if not may_manage:
        return (
            f"Only the person who started {poll.label} or a moderator can close it early. "
            f"It closes by itself {format_when(poll.closes_at, zone, now)}."
        )
    return None


def edit_refusal(poll: Poll, sender: str, votes: int, replayed: bool, prefix: str) -> str | None:
    """Only its creator may change a poll (a moderator would be putting words in their mouth),
    only while it is open, and only before anyone has voted: a vote is an answer to the question
    as it stood."""
    if replayed:
        return None
    if sender != poll.creator:
        return (
            f"Only the person who started {poll.label} can edit it. A moderator can cancel it "
            f"with {prefix}poll cancel {poll.label}."
        )
    if not poll.is_open:
        return f"{poll.label} is no longer open, so it can't be edited."
    if votes:
        return (
            f"{poll.label} already has {votes} vote{'s' if votes != 1 else ''}, so it can't be "
            f"changed any more: a vote answers the question as it stood. You can cancel it with "
            f"{prefix}poll cancel {poll.label} and start a new one."
        )
    return None


def cancel_refusal(poll: Poll, may_manage: bool, replayed: bool, prefix: str) -> str | None:
    """Its creator or a moderator may cancel an open poll; nothing is published."""
    if replayed:
        return None
    if not may_manage:
        return f"Only the person who started {poll.label} or a moderator can cancel it."
    if poll.is_cancelled:
        return f"{poll.label} is already cancelled."
    if not poll.is_open:
        return (
            f"{poll.label} has already closed and its results are out, so it can't be "
            f"cancelled. {prefix}poll show {poll.label} shows them."
        )
    return None


def outcome_refusal(poll: Poll, may_manage: bool, prefix: str) -> str | None:
    if not may_manage:
        return f"Only the person who started {poll.label} or a moderator can record its outcome."
    if poll.is_cancelled:
        return f"{poll.label} was cancelled, so there is no outcome to record."
    if not poll.is_closed:
        return (
            f"{poll.label} is still open. Close it first with {prefix}poll close {poll.label}, "
            "then record the outcome."
        )
    return None


def secret_reply(poll: Poll, counted: bool, already: bool, refusal: str | None) -> tuple[str, bool]:
    """What a secret voter is told: the ballot ``counted`` now, or had ``already`` been cast
    (both answers, not errors), or neither (refused: the second value is False)."""
    if counted:
        return (
            f"✅ Your secret vote in {poll.label} has been counted. Nobody can see what you "
            "chose; only the totals will be published when it closes.",
            True,
        )
    if already:
        return (
            f"You have already voted in {poll.label}. A secret ballot can't be changed, "
            "because I keep no record of which ballot is yours.",
            True,
        )
    return refusal or f"Voting in {poll.label} has closed, so that vote was not counted.", False


def counted_after_all(poll: Poll) -> str:
    """For a secret voter asked to vote again after a stop whose first vote was then handled
    after all: it is the one that counts."""
    return (
        f"✅ Your secret vote in {poll.label} has been counted after all: the one you sent "
        "before I restarted reached me in the end, so there is nothing more to send. A secret "
        "ballot can't be changed."
    )


def renumbered(kind: PollKind, options: Sequence[Option], edit: int) -> list[Option]:
    """The options of a poll's ``edit``-th version, with answer ids of their own (``e2-1``…), so
    a button vote from a client still showing an older version is spoiled instead of being
    read as whatever option now has its number. A proposal's answers never change."""
    if kind is PollKind.PROPOSAL:
        return list(options)
    return [Option(f"e{edit}-{n}", o.text) for n, o in enumerate(options, start=1)]


def subcommand_hint(word: str, prefix: str) -> str:
    """``!poll close`` (or show, edit, cancel) without a usable poll id: what to type."""
    if word == "edit":
        return (
            f"Type {prefix}poll edit P-12 and then the whole poll as you'd write it for "
            f"{prefix}poll: question | option | option ({prefix}polls lists the open ones)."
        )
    return (
        f"Which poll? Type {prefix}poll {word} P-12 ({prefix}polls lists the open ones). To start "
        "a poll, give the question and at least two options, separated by |."
    )
