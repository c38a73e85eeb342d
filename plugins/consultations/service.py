"""The rules of a consultation, with no Matrix in them: reading what a councillor types, reading
an answer, and the summary posted at the close (all plain functions over plain data)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from civicbot.api import ChoiceError, clean_text, list_choices, read_choices, yes_or_no

TEXT, ONE, SEVERAL, STATEMENT = "text", "one", "several", "statement"
PUBLIC, PRIVATE, ANONYMOUS = "public", "private", "anonymous"
VISIBILITIES = (PUBLIC, PRIVATE, ANONYMOUS)
OPEN, CLOSED, RESPONDED, UPDATED = "open", "closed", "responded", "updated"
STATUSES = ("in progress", "done", "not going ahead")
VOTES = ("agree", "disagree", "pass")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
MAX_QUESTIONS, MAX_OPTIONS, MAX_TEXT = 30, 12, 2000
TEXTS_SHOWN, TEXT_SHOWN_LENGTH = 60, 160  # free-text answers quoted in a summary, in all
# The rule the summary states: among those who voted on a statement (pass included), at least
# CONSENSUS_SHARE on one side and MIN_VOTES votes make it common ground; agree and disagree each
# holding at least DIVISIVE_SHARE of the agree-or-disagree votes make it one that splits the room.
CONSENSUS_SHARE, DIVISIVE_SHARE, MIN_VOTES = 2 / 3, 0.4, 3
RULE = (
    "Common ground: two thirds or more of those who voted on it (at least 3) agree, or disagree. "
    "Splits the room: agree and disagree each have 40% or more of the agree/disagree votes."
)
EXAMPLE = (
    "!consult Park improvements | What should the park grant pay for? | closes friday 18:00 | "
    "text: What would make the park better? | one: Which comes first? Benches / Lights / Trees | "
    "statement: The park should close at dusk"
)
_KIND_WORDS = {
    "text": TEXT,
    "free text": TEXT,
    "question": TEXT,
    "one": ONE,
    "choose one": ONE,
    "choice": ONE,
    "several": SEVERAL,
    "choose several": SEVERAL,
    "statement": STATEMENT,
    "agree": STATEMENT,
}
_KIND_LINE = re.compile(r"^\s*(?:\d+[.)]\s*)?([a-z ]+?)\s*:\s*(.+)$", re.IGNORECASE | re.DOTALL)
_CLOSES = re.compile(r"^\s*(?:closes?|closing|until|deadline)\b[:\s]*(.*)$", re.IGNORECASE)


class ConsultationInputError(ValueError):
    """What the councillor typed can't be read; the message says what to type instead."""


class AnswerError(ValueError):
    """An answer that can't be recorded; the message says what to type instead."""


@dataclass
class Question:
    number: int
    kind: str
    prompt: str
    options: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return {TEXT: "free text", ONE: "choose one", SEVERAL: "choose one or more"}.get(
            self.kind, "agree / disagree / pass"
        )

    def how_to_answer(self) -> str:
        """What to type for this question, for the walk-through and for error replies."""
        if self.kind == TEXT:
            return "type your answer"
        if self.kind == STATEMENT:
            return "type agree, disagree or pass"
        letters = ", ".join(LETTERS[: len(self.options)])
        if self.kind == ONE:
            return f"type one letter: {letters}"
        return f"type one or more letters, like 'a c' (choices: {letters})"


@dataclass
class ConsultationSpec:
    title: str
    description: str
    closes_text: str
    visibility: str
    moderated: bool
    questions: list[Question]


def parse_consultation(parts: list[str]) -> ConsultationSpec:
    """Read ``!consult`` split into parts (new lines or `` | ``): the title first, then a
    description, ``closes <when>``, ``public``/``private``/``anonymous``, ``moderated``, and
    questions as ``text: …``, ``one: Question? A / B``, ``several: …`` or ``statement: …``."""
    parts = [clean_text(p).strip() for p in parts if clean_text(p).strip()]
    if not parts:
        raise ConsultationInputError("Give the consultation a title and some questions.")
    title, rest = parts[0], parts[1:]
    if len(title) > 200:
        raise ConsultationInputError("That title is long: keep it under 200 characters.")
    description: list[str] = []
    closes, visibility, moderated = "", PUBLIC, False
    questions: list[Question] = []
    for part in rest:
        word = part.lower().strip(" .")
        if word in VISIBILITIES or word.startswith("visibility"):
            visibility = word.split()[-1].strip(":")
            if visibility not in VISIBILITIES:
                raise ConsultationInputError("Visibility is public, private or anonymous.")
            continue
        if word in ("moderated", "moderation", "moderation on", "moderate statements"):
            moderated = True
            continue
        found = _CLOSES.match(part)
        if found and not questions:
            closes = found.group(1).strip()
            continue
        question = _question(part, len(questions) + 1)
        if question is not None:
            questions.append(question)
        elif questions:
            raise ConsultationInputError(
                f"I couldn't read “{part[:40]}” as a question: start it with text:, one:, "
                "several: or statement:."
            )
        else:
            description.append(part)
    if not questions:
        raise ConsultationInputError(
            "Add at least one question (text:, one:, several: or statement:)."
        )
    if len(questions) > MAX_QUESTIONS:
        raise ConsultationInputError(f"That's a lot of questions: {MAX_QUESTIONS} at most.")
    if not closes:
        raise ConsultationInputError("Say when it closes, for example `closes friday 18:00`.")
    return ConsultationSpec(title, " ".join(description), closes, visibility, moderated, questions)


def _question(part: str, number: int) -> Question | None:
    found = _KIND_LINE.match(part)
    if found is None or found.group(1).lower().strip() not in _KIND_WORDS:
        return None
    kind, body = _KIND_WORDS[found.group(1).lower().strip()], found.group(2).strip()
    if kind in (TEXT, STATEMENT):
        if len(body) > 500:
            raise ConsultationInputError(
                f"Question {number} is long: keep it under 500 characters."
            )
        return Question(number, kind, body)
    prompt, mark, choices = body.partition("?")
    options = [o.strip() for o in re.split(r"\s*/\s*|\s*;\s*", choices) if o.strip()]
    if not mark or len(options) < 2:
        raise ConsultationInputError(
            f"Question {number}: end the question with ? and list at least two choices after "
            "it, separated by /, like `one: Which comes first? Benches / Lights`."
        )
    if len(options) > MAX_OPTIONS:
        raise ConsultationInputError(f"Question {number}: {MAX_OPTIONS} choices at most.")
    return Question(number, kind, prompt.strip() + "?", options)


def read_answer(question: Question, raw: str) -> str:
    """The stored form of an answer to ``question``: the text, a letter or letters ("a c"), or
    agree/disagree/pass. Raises :class:`AnswerError` saying what to type."""
    text = clean_text(raw).strip()
    if not text:
        raise AnswerError(f"Question {question.number}: {question.how_to_answer()}.")
    if question.kind == TEXT:
        if len(text) > MAX_TEXT:
            raise AnswerError(f"That answer is long: keep it under {MAX_TEXT} characters.")
        return text
    if question.kind == STATEMENT:
        word = text.lower().strip(" .!")
        word = {"skip": "pass", "unsure": "pass"}.get(word, word)
        plain = yes_or_no(text)  # "yes please" agrees, as "yes" does
        if plain is not None:
            word = "agree" if plain else "disagree"
        if word not in VOTES:
            raise AnswerError(
                f"Question {question.number} is a statement: type agree, disagree or pass."
            )
        return word
    picked = _letters(question, text)
    if question.kind == ONE and len(picked) != 1:
        raise AnswerError(
            f"Question {question.number}: pick one choice ({question.how_to_answer()})."
        )
    return " ".join(picked)


def _letters(question: Question, text: str) -> list[str]:
    """The letters ``text`` picks: whole choice texts first ("most nights"), then letters,
    numbers and choice texts one by one ("Saturday and Sunday", "a c")."""
    try:
        indexes = read_choices(text, question.options)
    except ChoiceError as exc:
        if exc.reason == "ambiguous":
            could = " or ".join(f"{LETTERS[n]}) {question.options[n]}" for n in exc.candidates)
            raise AnswerError(
                f"Question {question.number}: “{exc.token}” could be {could}; "
                f"{question.how_to_answer()}."
            ) from None
        raise AnswerError(
            f"Question {question.number} has no choice “{exc.token}”: "
            f"{question.how_to_answer()}. The choices are "
            f"{list_choices(question.options, letters=True)}."
        ) from None
    picked = sorted({LETTERS[n] for n in indexes if n < len(LETTERS)})
    if not picked:
        raise AnswerError(f"Question {question.number}: {question.how_to_answer()}.")
    return picked


# -- the summary ---------------------------------------------------------------------------------
@dataclass
class StatementResult:
    number: int
    text: str
    agree: int
    disagree: int
    passed: int
    verdict: str  # "agree", "disagree", "divisive" or ""


@dataclass
class QuestionResult:
    question: Question
    answered: int
    counts: list[int] = field(default_factory=list)  # per choice
    texts: list[tuple[str, str]] = field(default_factory=list)  # (who, text), public only
    more_texts: int = 0  # free-text answers left out of the message (all are in the CSV)
    statement: StatementResult | None = None


@dataclass
class Summary:
    people: int
    answers: int
    results: list[QuestionResult]
    show_texts: bool

    @property
    def common_ground(self) -> list[StatementResult]:
        return [r.statement for r in self.results if r.statement and r.statement.verdict in VOTES]

    @property
    def divisive(self) -> list[StatementResult]:
        return [
            r.statement for r in self.results if r.statement and r.statement.verdict == "divisive"
        ]


def _cut(text: str, limit: int = TEXT_SHOWN_LENGTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def statement_verdict(agree: int, disagree: int, passed: int) -> str:
    """Apply :data:`RULE`: "agree"/"disagree" (common ground), "divisive", or ""."""
    total = agree + disagree + passed
    if total >= MIN_VOTES:
        if agree >= CONSENSUS_SHARE * total:
            return "agree"
        if disagree >= CONSENSUS_SHARE * total:
            return "disagree"
    sides = agree + disagree
    if sides >= MIN_VOTES and min(agree, disagree) >= DIVISIVE_SHARE * sides:
        return "divisive"
    return ""


def summarise(
    questions: list[Question],
    bundles: Iterable[tuple[str, dict[int, str]]],
    show_texts: bool,
) -> Summary:
    """Count ``bundles`` — one ``(who, {question number: answer})`` per respondent (``who`` is
    "" where no name may be shown) — into the summary of a consultation."""
    by_number = {q.number: q for q in questions}
    answered = {q.number: 0 for q in questions}
    counts = {q.number: [0] * len(q.options) for q in questions}
    votes = {q.number: [0, 0, 0] for q in questions if q.kind == STATEMENT}
    texts: dict[int, list[tuple[str, str]]] = {q.number: [] for q in questions}
    people = answers = 0
    for who, bundle in bundles:
        counted = False
        for number, value in bundle.items():
            question = by_number.get(number)
            if question is None:
                continue
            counted = True
            answers += 1
            answered[number] += 1
            if question.kind == STATEMENT:
                if value in VOTES:
                    votes[number][VOTES.index(value)] += 1
            elif question.kind == TEXT:
                if show_texts:
                    texts[number].append((who, value))
            else:
                for letter in value.split():
                    index = LETTERS.find(letter)
                    if 0 <= index < len(question.options):
                        counts[number][index] += 1
        people += counted
    # One Matrix event holds at most 64 KiB: show a share of a fixed budget of free-text answers
    # per question, each cut short; the CSV has them all.
    text_questions = sum(1 for q in questions if q.kind == TEXT) or 1
    shown = max(2, TEXTS_SHOWN // text_questions)
    results = []
    for q in questions:
        statement = None
        if q.kind == STATEMENT:
            a, d, p = votes[q.number]
            statement = StatementResult(q.number, q.prompt, a, d, p, statement_verdict(a, d, p))
        kept = [(who, _cut(text)) for who, text in texts[q.number][:shown]]
        more = len(texts[q.number]) - len(kept)
        results.append(
            QuestionResult(q, answered[q.number], counts[q.number], kept, more, statement)
        )
    return Summary(people, answers, results, show_texts)


def csv_export(questions: list[Question], rows: Iterable[tuple[str, dict[int, str]]]) -> bytes:
    """The council's record: one line per respondent, one column per question, choices spelt
    out. ``who`` is empty for anonymous answers."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["respondent", *(f"{q.number}. {q.prompt}" for q in questions)])
    for who, bundle in rows:
        line = [who]
        for q in questions:
            value = bundle.get(q.number, "")
            if q.kind in (ONE, SEVERAL) and value:
                value = "; ".join(
                    q.options[LETTERS.index(x)]
                    for x in value.split()
                    if LETTERS.find(x) < len(q.options)
                )
            line.append(_safe_cell(value))
        writer.writerow(line)
    return out.getvalue().encode("utf-8")


def _safe_cell(value: str) -> str:
    # A cell starting with = + - @ is run as a formula by spreadsheet programs.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def parse_status(text: str) -> tuple[str, str]:
    """``in progress …``, ``done …``, ``not going ahead …`` → (status, the rest)."""
    cleaned = clean_text(text).strip()
    lowered = cleaned.lower()
    for status in STATUSES:
        if lowered.startswith(status):
            return status, cleaned[len(status) :].strip(" :-—")
    raise AnswerError(
        "Start the update with its status: in progress, done or not going ahead, "
        "for example `!update C-2 in progress The benches are ordered`."
    )


def days_waiting(closed_at: int, now: int) -> int:
    return max(0, (now - closed_at) // 86400)


def publish_refusal(state: str, kind: str, label: str, text: str, prefix: str) -> str:
    """Why a response (``kind`` "response") or an update can't be posted now, or ""."""
    if state == OPEN:
        return f"{label} is still open: close it first with {prefix}consult close {label}."
    if kind == "response" and state != CLOSED:
        return (
            f"{label} has a response already: add an update with {prefix}update {label} "
            "in progress|done|not going ahead <text>."
        )
    if kind == "update" and state == CLOSED:
        return f"Post the response first: {prefix}respond {label} <text>."
    if not text:
        word = "respond" if kind == "response" else "update"
        return f"Type the text after the id: {prefix}{word} {label} …"
    return ""
