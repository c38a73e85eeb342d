"""Reading a vote or a ranking as residents type it. Pure functions.

``!vote P-12 2``, ``!vote P-12 “Saturday”.``, ``!vote P-12 1, 3``, ``!vote P-3 block <why>``,
``!rank P-4 3 > 1 > 2``: text is cleaned (:func:`civicbot.core.text.clean_text`) and quotes and full
stops around a choice go, as they do around options (:func:`parsing.unquote`).
"""

from __future__ import annotations

from dataclasses import dataclass

from civicbot_plugins.polls.parsing import unquote
from civicbot_plugins.polls.service import PROPOSAL_OPTIONS, Option, PollKind

from civicbot.api import ChoiceError, clean_text, list_choices, read_choices

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


class VoteError(ValueError):
    """A vote could not be read; the message says what to type instead."""


@dataclass
class Choice:
    answers: list[str]  # option ids in order; empty = withdraw
    reason: str = ""


def parse_choice(
    text: str, kind: PollKind, options: list[Option], max_selections: int, label: str
) -> Choice:
    """Read the choice part of ``!vote P-12 …`` (``label`` is ``P-12``, for the messages).
    Quotes and a full stop around the choice are dropped, as they are around options."""
    text = unquote(" ".join(clean_text(text).split()))[0]
    words = text.split(" ", 1)
    first = unquote(words[0])[0].lower()
    if first in WITHDRAW_WORDS and len(words) == 1:
        return Choice([])
    if kind is PollKind.PROPOSAL:
        return _proposal_choice(words, first, label)
    if kind is PollKind.RANKED:
        return Choice(parse_ranking(text, options, label))
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
    picks = _numbers(clean_text(text), options, label, ranking=True)
    return [options[n - 1].id for n in picks]


def _numbers(text: str, options: list[Option], label: str, ranking: bool = False) -> list[int]:
    """The option numbers ``text`` picks, by number, letter or option text (the engine's
    :func:`read_choices`), in the order typed; a repeat is dropped from a vote and refused in a
    ranking."""
    example = " ".join(str(n) for n in range(min(3, len(options)), 0, -1))
    how = (
        f"Rank the option numbers, favourite first, like !rank {label} {example}."
        if ranking
        else f"Give the option number, like !vote {label} 1."
    )
    texts = [unquote(option.text)[0] or option.text for option in options]
    try:
        indexes = read_choices(text, texts)
    except ChoiceError as exc:
        if exc.reason == "range":
            raise VoteError(
                f"{label} has options 1 to {len(options)}; there is no {exc.token}."
            ) from None
        if exc.reason == "ambiguous":
            could = " or ".join(f"{n + 1} {texts[n]}" for n in exc.candidates)
            raise VoteError(f"'{exc.token}' could be {could}. {how}") from None
        raise VoteError(
            f"I didn't understand '{exc.token}'. The options are {list_choices(texts)}. {how}"
        ) from None
    if not indexes:
        raise VoteError(how)
    picks: list[int] = []
    for index in indexes:
        value = index + 1
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
