"""Finding a time: availability answers, the ranked table, the best slot. Pure functions.

Each answer is a person's whole ballot: every slot gets yes, if-need-be or no (a slot not
mentioned is "no"), and the latest ballot per person wins, whether typed (``!avail M-3 1y 2?``)
or sent as a native poll response (selected slots mean "yes"). Slots are ranked by Rallly's rule:
most people who can come (yes + if need be), then most yes; a tie goes to the earlier slot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from civicbot.api import UsageError, format_when, whole_number, zone_name

AVAIL_EXAMPLE = "!avail M-3 1y 2? 3n (yes, if need be, no), or !avail M-3 all"
TZ_EXAMPLE = "Europe/London, Europe/Warsaw or America/New_York"


class Answer(StrEnum):
    YES = "yes"
    MAYBE = "ifneedbe"
    NO = "no"
    NONE = "none"  # withdrawn (an empty or spoiled poll response): counts for nothing


class Rsvp(StrEnum):
    GOING = "going"
    MAYBE = "maybe"
    NO = "no"


class AnswerError(ValueError):
    """An answer could not be read; the message says what to type instead."""


Ballot = dict[int, Answer]  # slot number (1-based) -> answer, for every slot

_MARKS = {
    "": Answer.YES, "y": Answer.YES, "yes": Answer.YES, "ok": Answer.YES, "✓": Answer.YES,
    "?": Answer.MAYBE, "m": Answer.MAYBE, "maybe": Answer.MAYBE, "ifneedbe": Answer.MAYBE,
    "inb": Answer.MAYBE, "n": Answer.NO, "no": Answer.NO, "x": Answer.NO, "✗": Answer.NO,
}  # fmt: skip
_TOKEN = re.compile(r"^(?P<first>\d{1,2})(?:-(?P<last>\d{1,2}))?\s*(?P<mark>[a-z?✓✗]*)$", re.I)
_WHOLE = {"all": Answer.YES, "none": Answer.NO, "all?": Answer.MAYBE, "allmaybe": Answer.MAYBE}
_RSVP = {
    "going": Rsvp.GOING, "yes": Rsvp.GOING, "y": Rsvp.GOING, "coming": Rsvp.GOING,
    "maybe": Rsvp.MAYBE, "?": Rsvp.MAYBE, "perhaps": Rsvp.MAYBE,
    "no": Rsvp.NO, "n": Rsvp.NO, "not going": Rsvp.NO, "notgoing": Rsvp.NO, "cant": Rsvp.NO,
    "can't": Rsvp.NO,
}  # fmt: skip


def parse_availability(text: str, slot_count: int) -> Ballot:
    """``1y 2? 3n`` / ``1 3`` / ``1-3y 4?`` / ``all`` / ``none`` / ``all 3n`` → a full ballot.

    Later tokens override earlier ones, so ``all 3n`` means every slot but 3. Unmentioned slots
    are "no". Raises :class:`AnswerError` naming the bad token or slot number."""
    tokens = [t for t in re.split(r"[\s,;]+", text.strip().lower().replace("’", "'")) if t]
    if not tokens:
        raise AnswerError(f"Say which times you can make, like {AVAIL_EXAMPLE}.")
    ballot: Ballot = dict.fromkeys(range(1, slot_count + 1), Answer.NO)
    for token in _join_marks(tokens):
        whole = _WHOLE.get(token)
        if whole is not None:
            ballot = dict.fromkeys(ballot, whole)
            continue
        match = _TOKEN.match(token)
        mark = _MARKS.get(match["mark"].lower()) if match else None
        if match is None or mark is None:
            raise AnswerError(f"I couldn't read '{token[:20]}'. Type it like {AVAIL_EXAMPLE}.")
        first = int(match["first"])
        last = int(match["last"] or first)
        if last < first:
            raise AnswerError(f"Write a range low to high, like {last}-{first}.")
        for number in range(first, last + 1):
            if number not in ballot:
                raise AnswerError(
                    f"There is no time {number}: this meeting has times 1 to {slot_count}."
                )
            ballot[number] = mark
    return ballot


def _join_marks(tokens: list[str]) -> list[str]:
    """``1 y 2 ?`` (a mark typed apart from its number) reads like ``1y 2?``."""
    joined: list[str] = []
    for token in tokens:
        if joined and token in _MARKS and token and joined[-1][-1:].isdigit():
            joined[-1] += token
        else:
            joined.append(token)
    return joined


def ballot_from_poll(answers: object, answer_ids: Sequence[str]) -> Ballot:
    """A native poll response → a ballot: the selected answers are "yes", the rest "no".
    ``answer_ids[n - 1]`` is slot n's answer id. An empty (withdrawn) or spoiled response
    (not a list of known ids, as Matrix clients judge it) withdraws: every slot is NONE."""
    numbers = {answer_id: n for n, answer_id in enumerate(answer_ids, start=1)}
    all_none = dict.fromkeys(numbers.values(), Answer.NONE)
    if not isinstance(answers, list) or not answers:
        return all_none
    if not all(isinstance(a, str) and a in numbers for a in answers):
        return all_none
    chosen = {numbers[a] for a in answers}
    return {n: Answer.YES if n in chosen else Answer.NO for n in numbers.values()}


SLOT_ANSWERS: tuple[tuple[str, str, Answer], ...] = (
    ("yes", "Yes", Answer.YES),
    ("ifneedbe", "If need be", Answer.MAYBE),
    ("no", "No", Answer.NO),
)


def ballot_from_slot_poll(answers: object, slot: int) -> Ballot:
    """A response to one time's yes / if need be / no poll → that slot's answer. Read as
    Element reads it (matrix-events-sdk): spoiled if any answer is unknown, else the first
    counts; an empty or spoiled response withdraws."""
    known = {answer_id: answer for answer_id, _, answer in SLOT_ANSWERS}
    if not isinstance(answers, list) or not answers:
        return {slot: Answer.NONE}
    if not all(isinstance(a, str) and a in known for a in answers):
        return {slot: Answer.NONE}
    return {slot: known[answers[0]]}


def parse_rsvp(text: str) -> Rsvp:
    """``going`` / ``maybe`` / ``no`` (and a few plain synonyms) → :class:`Rsvp`."""
    key = " ".join(text.lower().replace("’", "'").split())
    found = _RSVP.get(key)
    if found is None:
        raise AnswerError("Answer with going, maybe or no, like: !rsvp M-3 going")
    return found


@dataclass(frozen=True, slots=True)
class SlotTally:
    """One row of the availability table."""

    number: int
    start: datetime
    yes: tuple[str, ...]  # who, sorted
    maybe: tuple[str, ...]
    no: int

    @property
    def can_come(self) -> int:
        return len(self.yes) + len(self.maybe)

    @property
    def score(self) -> tuple[int, int]:
        """Rallly's rule: people who can come, then people for whom it is a clear yes."""
        return self.can_come, len(self.yes)


@dataclass(frozen=True, slots=True)
class Table:
    """The availability table: slots ranked best first, and how many people answered."""

    ranked: tuple[SlotTally, ...]
    respondents: int

    @property
    def by_number(self) -> tuple[SlotTally, ...]:
        return tuple(sorted(self.ranked, key=lambda t: t.number))


@dataclass(frozen=True, slots=True)
class Best:
    """The slot to fix. ``tied_with`` lists the slot numbers with the same score that lost only
    because they are later; the announcement should say so."""

    slot: SlotTally
    tied_with: tuple[int, ...]


def tally(slots: Sequence[datetime], ballots: Mapping[str, Mapping[int, Answer]]) -> Table:
    """The ranked table for ``slots`` (slot n is ``slots[n - 1]``) from each person's latest
    ballot. Ranked by (yes + if need be), then yes, then the earlier start."""
    yes: dict[int, list[str]] = {n: [] for n in range(1, len(slots) + 1)}
    maybe: dict[int, list[str]] = {n: [] for n in yes}
    no = dict.fromkeys(yes, 0)
    respondents = 0
    for person, ballot in ballots.items():
        answered = False
        for number, answer in ballot.items():
            if number not in yes:
                continue  # a slot that no longer exists
            if answer is Answer.YES:
                yes[number].append(person)
            elif answer is Answer.MAYBE:
                maybe[number].append(person)
            elif answer is Answer.NO:
                no[number] += 1
            else:
                continue
            answered = True
        respondents += answered
    rows = [
        SlotTally(n, slots[n - 1], tuple(sorted(yes[n])), tuple(sorted(maybe[n])), no[n])
        for n in yes
    ]
    rows.sort(key=lambda t: (-t.can_come, -len(t.yes), t.start, t.number))
    return Table(tuple(rows), respondents)


def best_slot(table: Table) -> Best | None:
    """The winner of :func:`tally`, or None when nobody can come to any slot."""
    if not table.ranked or table.ranked[0].can_come == 0:
        return None
    winner = table.ranked[0]
    tied = tuple(sorted(t.number for t in table.ranked[1:] if t.score == winner.score))
    return Best(winner, tied)


def slot_number(text: str, slot_count: int) -> int:
    """``2`` (from ``!meet fix M-3 2``) → 2, checked against the meeting's slots."""
    try:
        return whole_number(text, 1, slot_count)
    except UsageError:
        raise AnswerError(
            f"Pick a time by its number, 1 to {slot_count}, like: !meet fix M-3 2"
        ) from None


def resolve_zone(text: str) -> ZoneInfo:
    """``europe/warsaw`` → ``ZoneInfo("Europe/Warsaw")`` (the engine's :func:`zone_name`, the
    same reading as ``!config room.timezone``); an unknown name raises :class:`AnswerError`
    saying what to type."""
    try:
        return ZoneInfo(zone_name(text))
    except ValueError:
        raise AnswerError(
            f"I don't know the time zone '{text.strip()[:40]}'. Use a name like {TZ_EXAMPLE}."
        ) from None


def format_slot(
    start: datetime, duration: timedelta, zone: ZoneInfo, now: datetime | None = None
) -> str:
    """``Tue 8 Dec 18:00–19:30 Europe/London`` (the end's date too if it is another day)."""
    begin = format_when(start, zone, now)
    end = (start + duration).astimezone(zone)
    local_start = start.astimezone(zone)
    day, zone_name = begin.rsplit(" ", 1)
    if end.date() == local_start.date():
        return f"{day}–{end:%H:%M} {zone_name}"
    return f"{day} – {end:%a} {end.day} {end:%b} {end:%H:%M} {zone_name}"


def numbered_slots(
    slots: Iterable[datetime], duration: timedelta, zone: ZoneInfo, now: datetime | None = None
) -> list[str]:
    """``["1. Tue 8 Dec 18:00–19:00 Europe/London", …]``: the echo of a proposal."""
    return [f"{n}. {format_slot(start, duration, zone, now)}" for n, start in enumerate(slots, 1)]
