"""Reading what residents type: a new poll, a vote, a ranking, an outcome. Pure functions.

A poll is a question, then options, then any settings, split on new lines or on ``|``:

    !poll Which day for the litter pick? | Saturday | Sunday | closes friday 18:00
    !poll Adopt the new bin rota? | proposal | secret
    !poll Which mural design? | Birds | Bridges | Bikes | ranked | closes in 5 days

Every part is cleaned first (:func:`civicbot.core.text.clean_text`: NFC, no invisible or bidi
control characters), and quotes and trailing full stops around it go, so ``“Church hall”.`` is
the option ``Church hall``. Settings are read only from the parts that say nothing else:
``closes friday``, ``until friday``, ``up to two``. The clear ones (``closes …``, ``ranked``,
``secret``) count anywhere; the looser ones (``close``, ``ends``, ``until``) only at the end, so
an option can still be called "Close the road". A last part that looks like a setting but isn't
one (``up to you``, ``rankd``) is asked about instead of being guessed; a part in quotes is
always an option.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from civicbot_plugins.polls.service import PROPOSAL_OPTIONS, Option, PollKind

from civicbot.api import clean_text, comparison_key

MAX_OPTIONS = 20
MAX_QUESTION = 300
MAX_OPTION = 200

_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split(),
        start=1,
    )
}
_N = r"(?:\d{1,2}|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")"
# "closes", "closing" and "deadline" say what they are; the looser words name options too
# ("Close the road", "Until the money runs out") and count only at the end of the poll.
_CLOSES = re.compile(
    r"^(?P<word>closes|closing|deadline|voting\s+(?:closes|ends)|close|ends?|ending|"
    r"until|till|til|open\s+until)\b\s*:?\s*(?:(?:on|at)\b\s*)?(?P<when>.*)$",
    re.I,
)
_STRICT_CLOSE = frozenset({"closes", "closing", "deadline"})
_PICK = r"(?:multiple(?:\s+choices?)?|choose|pick|select|vote\s+for|tick)"
_OPTIONS_WORD = r"(?:\s+(?:options?|choices?))?"
_MULTIPLE = re.compile(
    r"^(?:(?:multiple|several)(?:\s+choices?)?|any\s+number|"
    rf"(?:{_PICK}\s*,?\s*)?(?:up\s+to|at\s+most|max(?:imum)?)\s*:?\s*(?P<n>{_N}){_OPTIONS_WORD}|"
    rf"{_PICK}\s+(?:any\s+)?(?P<m>{_N}){_OPTIONS_WORD})$",
    re.I,
)
# "up to you" may be an option or a mistyped limit: asked. "Pick up litter" is an option.
_LOOKS_MULTIPLE = re.compile(
    r"^(?:(?:choose|pick|select)\s+)?(?:up\s+to|at\s+most|max(?:imum)?)\b|^multiple\b", re.I
)
_FLAGS = {
    "ranked": re.compile(r"^(?:ranked(?:[\s-]+choice)?|rank(?:ed)?\s+them)$", re.I),
    "proposal": re.compile(r"^proposal$", re.I),
    "secret": re.compile(r"^secret(?:\s+ballot)?$", re.I),
    "hidden": re.compile(
        r"^(?:hidden(?:\s+results)?|hide\s+results|results\s+(?:at|after)\s+close)$", re.I
    ),
}
_FLAG_WORDS = ("ranked", "proposal", "secret", "hidden", "multiple")
_LIST_MARKER = re.compile(r"^(?:\d{1,2}[.)]|[-*•])\s+")
_QUOTES = {
    '"': '"',
    "“": "”",
    "”": "”",
    "„": "“",
    "'": "'",
    "‘": "’",
    "’": "’",
    "«": "»",
    "»": "«",
    "‹": "›",
    "「": "」",
}
_TRAILING = ".,;:!"


class PollInputError(ValueError):
    """The poll could not be read; the message says what is wrong and how to fix it."""


class UnclearSetting(PollInputError):
    """A last part looked like a setting but wasn't one: the message asks which was meant."""


@dataclass
class PollSpec:
    question: str
    options: list[Option]
    kind: PollKind = PollKind.SINGLE
    max_selections: int = 1
    secret: bool = False
    hidden: bool = False
    closes_text: str | None = None
    closes_part: str = ""  # the part the closing time came from, as typed
    closes_loose: bool = False  # read from a word that also starts options: if no time, ask


def unquote(text: str) -> tuple[str, bool]:
    """``“Church hall”.`` → (``Church hall``, True): matching straight or curly quotes and the
    full stops or commas around them go. The flag says whether there were quotes."""
    text = text.strip().rstrip(_TRAILING).strip()
    quoted = False
    while len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        text, quoted = text[1:-1].strip(), True
    if quoted:
        text = text.rstrip(_TRAILING).strip()
    return text, quoted


def split_input(raw: str) -> list[str]:
    """Parts on new lines (blank lines skipped) or on ``|``; an empty ``|`` part is kept as ""
    so it can be reported (a trailing ``|`` is forgiven)."""
    raw = clean_text(raw).strip()
    if "\n" in raw:
        # Lines end only at \n (as clients send them); \r, U+2028 and the like stay characters.
        return [line.strip() for line in raw.split("\n") if line.strip()]
    parts = [part.strip() for part in raw.split("|")]
    while parts and not parts[-1]:
        parts.pop()
    return parts


def _number_of(text: str) -> int:
    word = text.lower()
    return _NUMBER_WORDS[word] if word in _NUMBER_WORDS else int(text)


def _classify(part: str) -> tuple[str, re.Match[str] | None]:
    """What a part is: "closes"/"close" (a strict or loose closing time), "multiple", a flag
    name, "unclear" (looks like a setting, isn't one), or "option"."""
    text = part.rstrip(",;!").strip()
    if (closes := _CLOSES.match(text)) is not None:
        word = " ".join(closes.group("word").lower().split())
        if word in _STRICT_CLOSE or word.startswith("voting"):
            return "closes", closes
        if closes.group("when").strip(" ."):  # "Closed" or "End" alone is an option
            return "close", closes
    text = text.rstrip(".")
    if (many := _MULTIPLE.match(text)) is not None:
        return "multiple", many
    for name, pattern in _FLAGS.items():
        if pattern.match(text):
            return name, None
    if _LOOKS_MULTIPLE.match(text) or (_misspelt_flag(text)):
        return "unclear", None
    return "option", None


def parse_poll_input(raw: str) -> PollSpec:
    """Read ``!poll`` input into a :class:`PollSpec` or raise :class:`PollInputError`."""
    parts = split_input(raw)
    question = unquote(parts[0])[0] if parts else ""
    if not question:
        raise PollInputError("Start with the question, then the options.")
    if len(question) > MAX_QUESTION:
        raise PollInputError(
            f"The question is {len(question)} characters long; keep it under {MAX_QUESTION} "
            "and put the details in a message before the poll."
        )
    rest = parts[1:]
    kinds = [("option", None) if unquote(p)[1] or not p else _classify(p) for p in rest]
    tail = len(rest)  # settings of any kind are read from here on
    while tail and kinds[tail - 1][0] != "option":
        tail -= 1
    # Of several loose closing parts at the end ("Until Friday | Until Monday"), only the last
    # can be the setting.
    last_close = max((i for i, (k, _) in enumerate(kinds) if k in ("close", "closes")), default=-1)
    spec = PollSpec(question=question, options=[])
    flags: set[str] = set()
    multiple: int | None = None
    labels: list[str] = []
    for index, (part, (kind, match)) in enumerate(zip(rest, kinds, strict=True)):
        in_tail = index >= tail
        if not part:
            raise PollInputError(
                f"Option {len(labels) + 1} is empty. Separate options with | and leave none blank."
            )
        if kind == "unclear" and in_tail:
            raise UnclearSetting(_unclear(part))
        loose_close = kind == "close" and in_tail and index == last_close
        if (kind == "closes" or loose_close) and match is not None:
            when = re.sub(r"(?<![ap]\.m)[.]+$", "", match.group("when").strip(), flags=re.I)
            if spec.closes_text is not None:
                raise PollInputError("You gave two closing times; keep one.")
            if not when:
                raise PollInputError("Say when it closes, for example: closes friday 18:00")
            spec.closes_text, spec.closes_part = when, part
            spec.closes_loose = kind == "close"
            continue
        if kind == "multiple" and match is not None:
            count = match.group("n") or match.group("m")
            multiple = _number_of(count) if count else 0  # 0: as many as there are
            if count and multiple < 1:
                raise PollInputError("'up to 0' leaves nothing to choose; say up to 2 or more.")
            continue
        if kind in _FLAGS:
            flags.add(kind)
            continue
        label, _ = unquote(_LIST_MARKER.sub("", part, count=1).strip() or part)
        labels.append(label or part)
    spec.secret = "secret" in flags
    spec.hidden = "hidden" in flags or spec.secret  # running totals would reveal secret votes
    spec.kind = _kind(flags, multiple, labels)
    if spec.kind is PollKind.PROPOSAL:
        spec.options = list(PROPOSAL_OPTIONS)
        return spec
    spec.options = _options(labels, spec)
    if spec.kind is PollKind.MULTIPLE:
        spec.max_selections = min(multiple or len(spec.options), len(spec.options))
        if spec.max_selections == 1:
            spec.kind = PollKind.SINGLE
    elif spec.kind is PollKind.RANKED:
        spec.max_selections = len(spec.options)
    return spec


def _misspelt_flag(text: str) -> str | None:
    """The setting a one-word part is a typo of ("rankd", "secrit"), if any. Only near
    misses of about the same length: "Secretary" is an office, not a secret ballot."""
    word = text.lower().rstrip(".")
    if " " in word:
        return None
    for flag in difflib.get_close_matches(word, _FLAG_WORDS, 3, 0.8):
        if abs(len(flag) - len(word)) <= 1:
            return flag
    return None


def _unclear(part: str) -> str:
    shown = part if len(part) <= 40 else part[:39] + "…"
    guess = _misspelt_flag(part)
    meant = (
        f"the setting '{guess}'" if guess else "a setting like 'up to 2' (choose up to 2 options)"
    )
    return (
        f"Is '{shown}' an option, or did you mean {meant}? If it's an option, put it in quotes: "
        f'"{shown}". Otherwise write the setting like: up to 2, ranked, secret, closes friday.'
    )


def unreadable_closing(spec: PollSpec, problem: str) -> str:
    """What to say when a loose closing part ("until …", "close …") isn't a time: ask."""
    part = spec.closes_part
    return (
        f"{problem} Is '{part}' an option? Then put it in quotes: \"{part}\". "
        "For a closing time write it like: closes friday 18:00, or closes in 3 days."
    )


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


def _options(labels: list[str], spec: PollSpec) -> list[Option]:
    if len(labels) < 2:
        taken = (
            f" (I read '{spec.closes_part}' as the closing time; if it is an option, put it in "
            "quotes.)"
            if spec.closes_text and spec.closes_part and not _is_strict(spec.closes_part)
            else ""
        )
        raise PollInputError(
            "A poll needs at least two options after the question, separated by | or on new "
            "lines. For a yes/no decision add | proposal instead (agree, abstain, disagree, "
            f"block).{taken}"
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
        key = comparison_key(label)  # "a" and "a" + a zero-width space are one option
        if key in seen:
            raise PollInputError(
                f"Option {number} ('{label}') is the same as option {seen[key]}; "
                "each option must be different."
            )
        seen[key] = number
    return [Option(str(number), label) for number, label in enumerate(labels, start=1)]


def _is_strict(part: str) -> bool:
    return _classify(part)[0] == "closes"


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
