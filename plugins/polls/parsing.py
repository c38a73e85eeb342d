"""Reading what residents type: a new poll, a vote, a ranking, an outcome. Pure functions.

A poll is a question, then options, then any settings, split on new lines or on ``|``:

    !poll Which day for the litter pick? | Saturday | Sunday | closes friday 18:00
    !poll Adopt the new bin rota? | proposal | secret
    !poll Which mural design? | Birds | Bridges | Bikes | ranked | closes in 5 days

Settings are the parts after the question that match one of the patterns below exactly, so an
option can still be called "Close the road".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from civicbot_plugins.polls.service import PROPOSAL_OPTIONS, Option, PollKind

MAX_OPTIONS = 20
MAX_QUESTION = 300
MAX_OPTION = 200
MAX_REASON = 500
WITHDRAW_WORDS = frozenset({"withdraw", "none", "clear", "remove", "unvote", "retract"})
PROPOSAL_WORDS = {
    "agree": "agree",
    "yes": "agree",
    "abstain": "abstain",
    "disagree": "disagree",
    "no": "disagree",
    "block": "block",
}

_CLOSES = re.compile(r"^(?:closes|closing|ends|deadline)\b\s*:?\s*(?P<when>.*)$", re.I)
_MULTIPLE = re.compile(
    r"^(?:multiple(?:\s+choices?)?(?:\s+up\s+to)?|(?:choose|pick|select)?\s*up\s+to)"
    r"(?:\s+(?P<n>\d{1,2}))?$",
    re.I,
)
_FLAGS = {
    "ranked": re.compile(r"^(?:ranked(?:[\s-]+choice)?|rank(?:ed)?\s+them)$", re.I),
    "proposal": re.compile(r"^proposal$", re.I),
    "secret": re.compile(r"^secret(?:\s+ballot)?$", re.I),
    "hidden": re.compile(
        r"^(?:hidden(?:\s+results)?|hide\s+results|results\s+(?:at|after)\s+close)$", re.I
    ),
}
_LIST_MARKER = re.compile(r"^(?:\d{1,2}[.)]|[-*•])\s+")
_CHOICE_SPLIT = re.compile(r"\s*(?:,|>|;|\band\b|\s)\s*", re.I)


class PollInputError(ValueError):
    """The poll could not be read; the message says what is wrong and how to fix it."""


@dataclass
class PollSpec:
    question: str
    options: list[Option]
    kind: PollKind = PollKind.SINGLE
    max_selections: int = 1
    secret: bool = False
    hidden: bool = False
    closes_text: str | None = None


def split_input(raw: str) -> list[str]:
    """Parts on new lines (blank lines skipped) or on ``|``; an empty ``|`` part is kept as ""
    so it can be reported (a trailing ``|`` is forgiven)."""
    raw = raw.strip()
    if "\n" in raw:
        return [line.strip() for line in raw.splitlines() if line.strip()]
    parts = [part.strip() for part in raw.split("|")]
    while parts and not parts[-1]:
        parts.pop()
    return parts


def parse_poll_input(raw: str) -> PollSpec:
    """Read ``!poll`` input into a :class:`PollSpec` or raise :class:`PollInputError`."""
    parts = split_input(raw)
    if not parts or not parts[0]:
        raise PollInputError("Start with the question, then the options.")
    question, rest = parts[0], parts[1:]
    if len(question) > MAX_QUESTION:
        raise PollInputError(
            f"The question is {len(question)} characters long; keep it under {MAX_QUESTION} "
            "and put the details in a message before the poll."
        )
    spec = PollSpec(question=question, options=[])
    flags: set[str] = set()
    multiple: int | None = None
    labels: list[str] = []
    for part in rest:
        if not part:
            raise PollInputError(
                f"Option {len(labels) + 1} is empty. Separate options with | and leave none blank."
            )
        closes = _CLOSES.match(part)
        if closes:
            if spec.closes_text is not None:
                raise PollInputError("You gave two closing times; keep one.")
            if not closes.group("when").strip():
                raise PollInputError("Say when it closes, for example: closes friday 18:00")
            spec.closes_text = closes.group("when").strip()
            continue
        many = _MULTIPLE.match(part)
        if many:
            multiple = int(many.group("n")) if many.group("n") else 0  # 0: as many as there are
            if many.group("n") and multiple < 1:
                raise PollInputError("'up to 0' leaves nothing to choose; say up to 2 or more.")
            continue
        flag = next((name for name, pattern in _FLAGS.items() if pattern.match(part)), None)
        if flag:
            flags.add(flag)
            continue
        labels.append(_LIST_MARKER.sub("", part, count=1).strip() or part)
    spec.secret = "secret" in flags
    spec.hidden = "hidden" in flags or spec.secret  # running totals would reveal secret votes
    spec.kind = _kind(flags, multiple, labels)
    if spec.kind is PollKind.PROPOSAL:
        spec.options = list(PROPOSAL_OPTIONS)
        return spec
    spec.options = _options(labels)
    if spec.kind is PollKind.MULTIPLE:
        spec.max_selections = min(multiple or len(spec.options), len(spec.options))
        if spec.max_selections == 1:
            spec.kind = PollKind.SINGLE
    elif spec.kind is PollKind.RANKED:
        spec.max_selections = len(spec.options)
    return spec


def _kind(flags: set[str], multiple: int | None, labels: list[str]) -> PollKind:
    chosen: list[str] = [name for name in ("proposal", "ranked") if name in flags]
    if multiple is not None:
        chosen.append("multiple")
    if len(chosen) > 1:
        raise PollInputError(
            f"A poll can't be both {' and '.join(chosen)}; choose one kind "
            "(single choice is the default)."
        )
    if "proposal" in chosen:
        if labels:
            raise PollInputError(
                "A proposal has fixed answers (agree, abstain, disagree, block): leave out the "
                f"options ('{labels[0]}'…)."
            )
        return PollKind.PROPOSAL
    if "ranked" in chosen:
        return PollKind.RANKED
    if "multiple" in chosen:
        return PollKind.MULTIPLE
    return PollKind.SINGLE


def _options(labels: list[str]) -> list[Option]:
    if len(labels) < 2:
        raise PollInputError(
            "A poll needs at least two options after the question, separated by | or on new "
            "lines. For a yes/no decision add | proposal instead (agree, abstain, disagree, "
            "block)."
        )
    if len(labels) > MAX_OPTIONS:
        raise PollInputError(
            f"You gave {len(labels)} options; a poll can have at most {MAX_OPTIONS}."
        )
    seen: dict[str, int] = {}
    for number, label in enumerate(labels, start=1):
        if len(label) > MAX_OPTION:
            raise PollInputError(
                f"Option {number} is {len(label)} characters long; keep options under {MAX_OPTION}."
            )
        key = " ".join(label.casefold().split())
        if key in seen:
            raise PollInputError(
                f"Option {number} ('{label}') is the same as option {seen[key]}; "
                "each option must be different."
            )
        seen[key] = number
    return [Option(str(number), label) for number, label in enumerate(labels, start=1)]


# -- votes ---------------------------------------------------------------------------------------
class VoteError(ValueError):
    """A vote could not be read; the message says what to type instead."""


@dataclass
class Choice:
    answers: list[str]  # option ids in order; empty = withdraw
    reason: str = ""


def parse_choice(
    text: str, kind: PollKind, options: list[Option], max_selections: int, label: str
) -> Choice:
    """Read the choice part of ``!vote P-12 …`` (``label`` is ``P-12``, for the messages)."""
    text = " ".join(text.split())
    words = text.split(" ", 1)
    first = words[0].lower().strip(".!")
    if first in WITHDRAW_WORDS and len(words) == 1:
        return Choice([])
    if kind is PollKind.PROPOSAL:
        return _proposal_choice(words, first, label)
    if kind is PollKind.RANKED:
        return Choice(parse_ranking(text, options, label))
    by_text = _match_label(text, options)
    if by_text is not None:
        return Choice([by_text])
    picks = _numbers(text, options, label)
    if len(picks) > max_selections:
        if max_selections == 1:
            raise VoteError(
                f"{label} takes one choice: write one number, like !vote {label} {picks[0]}."
            )
        raise VoteError(f"{label} lets you choose up to {max_selections}; you gave {len(picks)}.")
    return Choice([options[n - 1].id for n in picks])


def _proposal_choice(words: list[str], first: str, label: str) -> Choice:
    position = PROPOSAL_WORDS.get(first)
    number = _number(first)
    if position is None and number is not None and 1 <= number <= len(PROPOSAL_OPTIONS):
        position = PROPOSAL_OPTIONS[number - 1].id
    if position is None:
        raise VoteError(
            f"On a proposal say agree, abstain, disagree or block, like !vote {label} agree."
        )
    reason = words[1].strip() if len(words) > 1 else ""
    if position == "block" and not reason:
        raise VoteError(
            f"A block stops the group going ahead, so please say why: "
            f"!vote {label} block <your reason>."
        )
    if len(reason) > MAX_REASON:
        raise VoteError(f"Please keep your reason under {MAX_REASON} characters.")
    return Choice([position], reason)


def parse_ranking(text: str, options: list[Option], label: str) -> list[str]:
    """``3 1 2`` (or ``3,1,2`` / ``3 > 1 > 2``): option numbers from most to least preferred."""
    picks = _numbers(text, options, label, ranking=True)
    return [options[n - 1].id for n in picks]


def _numbers(text: str, options: list[Option], label: str, ranking: bool = False) -> list[int]:
    tokens = [t for t in _CHOICE_SPLIT.split(text.strip().strip(".")) if t]
    example = " ".join(str(n) for n in range(min(3, len(options)), 0, -1))
    how = (
        f"Rank the option numbers, favourite first, like !rank {label} {example}."
        if ranking
        else f"Give the option number, like !vote {label} 1."
    )
    if not tokens:
        raise VoteError(how)
    picks: list[int] = []
    for token in tokens:
        value = _number(token.lstrip("#"))
        if value is None:
            raise VoteError(f"I didn't understand '{token[:20]}'. {how}")
        if not 1 <= value <= len(options):
            raise VoteError(
                f"{label} has options 1 to {len(options)}; there is no {token.lstrip('#')[:20]}."
            )
        if value in picks:
            if ranking:
                raise VoteError(f"You ranked option {value} twice; give each number once.")
            continue
        picks.append(value)
    return picks


def _number(text: str) -> int | None:
    """``"3"`` → 3. Digits of any script count (``"٣"`` is 3, as phones in Arabic type it), but
    not superscripts such as ``"²"``, which ``str.isdigit`` accepts and ``int`` refuses. Too
    long a number is as good as too big: -1."""
    if not text.isdecimal():
        return None
    return int(text) if len(text) <= 6 else -1


def _match_label(text: str, options: list[Option]) -> str | None:
    wanted = " ".join(text.casefold().split())
    for option in options:
        if " ".join(option.text.casefold().split()) == wanted:
            return option.id
    return None


@dataclass
class OutcomeSpec:
    text: str
    review_text: str | None = None


_REVIEW = re.compile(r"^review\b\s*:?\s*(?:on\b|at\b)?\s*(?P<when>.+)$", re.I)
MAX_OUTCOME = 2000


def parse_outcome(raw: str) -> OutcomeSpec:
    """``We'll ask the council for new bins | review in 3 months``: a last part starting with
    "review" is the date to bring the outcome back up."""
    parts = [part for part in split_input(raw) if part]
    review: str | None = None
    if len(parts) > 1:
        match = _REVIEW.match(parts[-1])
        if match:
            review = match.group("when").strip()
            parts.pop()
    text = "\n".join(parts).strip()
    if not text:
        raise PollInputError("Write what was decided, for example: !outcome P-3 New rota from May")
    if len(text) > MAX_OUTCOME:
        raise PollInputError(f"Please keep the outcome under {MAX_OUTCOME} characters.")
    return OutcomeSpec(text, review)
