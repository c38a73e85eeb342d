"""The pure rules of consultations: reading what people type, and the summary's counts."""

from __future__ import annotations

import csv
import io

import pytest
from civicbot_plugins.consultations import service
from civicbot_plugins.consultations.service import (
    ONE,
    SEVERAL,
    STATEMENT,
    TEXT,
    AnswerError,
    ConsultationInputError,
    Question,
    parse_consultation,
    read_answer,
    statement_verdict,
    summarise,
)


def test_a_consultation_reads_title_description_closing_settings_and_three_kinds():
    spec = parse_consultation(
        [
            "Park improvements",
            "What should the grant pay for?",
            "closes friday 18:00",
            "anonymous",
            "moderated",
            "text: What would make the park better?",
            "one: Which comes first? Benches / Lights / Trees",
            "several: Which days? Weekdays; Saturday; Sunday",
            "statement: The park should close at dusk",
        ]
    )
    assert spec.title == "Park improvements"
    assert spec.description == "What should the grant pay for?"
    assert spec.closes_text == "friday 18:00"
    assert (spec.visibility, spec.moderated) == ("anonymous", True)
    assert [(q.number, q.kind) for q in spec.questions] == [
        (1, TEXT),
        (2, ONE),
        (3, SEVERAL),
        (4, STATEMENT),
    ]
    assert spec.questions[1].options == ["Benches", "Lights", "Trees"]
    assert spec.questions[2].options == ["Weekdays", "Saturday", "Sunday"]


@pytest.mark.parametrize(
    ("parts", "says"),
    [
        (["Title", "closes friday"], "at least one question"),
        (["Title", "text: Why?"], "closes friday 18:00"),
        (["Title", "closes friday", "one: Pick? Only one"], "at least two choices"),
        (["Title", "closes friday", "text: Why?", "what is this"], "text:, one:"),
        (["Title", "visibility: secretish", "text: Why?", "closes friday"], "public, private"),
    ],
)
def test_unreadable_consultations_say_what_to_type(parts, says):
    with pytest.raises(ConsultationInputError, match=says):
        parse_consultation(parts)


CHOICE = Question(2, ONE, "Which comes first?", ["Benches", "Lights", "Trees"])
DAYS = Question(3, SEVERAL, "Which days?", ["Weekdays", "Saturday", "Sunday"])
DUSK = Question(4, STATEMENT, "The park should close at dusk")


def test_answers_are_read_as_letters_numbers_names_or_votes():
    assert read_answer(CHOICE, "b") == "b"
    assert read_answer(CHOICE, "B)") == "b"
    assert read_answer(CHOICE, "3") == "c"
    assert read_answer(CHOICE, "lights") == "b"
    assert read_answer(DAYS, "c, a a") == "a c"
    assert read_answer(DUSK, "Agree!") == "agree"
    assert read_answer(DUSK, "no") == "disagree"
    assert read_answer(Question(1, TEXT, "Why?"), " Benches\u200b please ") == "Benches please"


@pytest.mark.parametrize(
    ("question", "raw", "says"),
    [
        (CHOICE, "z", "no choice “z”: type one letter: a, b, c"),
        (CHOICE, "a b", "pick one choice"),
        (DAYS, "", "type one or more letters"),
        (DUSK, "maybe", "type agree, disagree or pass"),
    ],
)
def test_unknown_answers_say_what_to_type(question, raw, says):
    with pytest.raises(AnswerError, match=says):
        read_answer(question, raw)


def test_the_stated_rule_for_common_ground_and_splits():
    assert statement_verdict(4, 1, 1) == "agree"  # 4 of 6 is two thirds
    assert statement_verdict(1, 3, 0) == "disagree"
    assert statement_verdict(2, 0, 0) == ""  # too few votes to call
    assert statement_verdict(3, 2, 1) == "divisive"  # 2 of 5 sided votes is 40%
    assert statement_verdict(6, 3, 1) == ""  # a majority short of two thirds, not a split
    assert statement_verdict(0, 0, 5) == ""


def test_summary_counts_people_answers_choices_votes_and_texts():
    questions = [Question(1, TEXT, "Why?"), CHOICE, DAYS, DUSK]
    bundles = [
        ("@ann:x", {1: "Benches please", 2: "a", 4: "agree"}),
        ("@bob:x", {2: "a", 3: "a b", 4: "agree"}),
        ("@cat:x", {3: "b", 4: "agree"}),
        ("@dan:x", {4: "disagree"}),
        ("@eve:x", {}),  # someone who answered nothing is not counted
    ]
    s = summarise(questions, bundles, show_texts=True)
    assert (s.people, s.answers) == (4, 9)
    by_number = {r.question.number: r for r in s.results}
    assert by_number[1].texts == [("@ann:x", "Benches please")]
    assert by_number[2].counts == [2, 0, 0]
    assert by_number[3].counts == [1, 2, 0]
    statement = by_number[4].statement
    assert statement is not None
    assert (statement.agree, statement.disagree, statement.passed) == (3, 1, 0)
    assert [st.number for st in s.common_ground] == [4]
    assert s.divisive == []
    hidden = summarise(questions, bundles, show_texts=False)
    assert hidden.results[0].texts == [] and hidden.results[0].answered == 1


def test_the_csv_spells_out_choices_and_defuses_formulas():
    questions = [Question(1, TEXT, "Why?"), CHOICE, DAYS]
    data = service.csv_export(questions, [("@ann:x", {1: "=HYPERLINK(1)", 2: "b", 3: "a c"})])
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert rows[0] == ["respondent", "1. Why?", "2. Which comes first?", "3. Which days?"]
    assert rows[1] == ["@ann:x", "'=HYPERLINK(1)", "Lights", "Weekdays; Sunday"]


def test_update_statuses():
    assert service.parse_status("Not going ahead: no budget") == ("not going ahead", "no budget")
    assert service.parse_status("in progress the benches are ordered") == (
        "in progress",
        "the benches are ordered",
    )
    with pytest.raises(AnswerError, match="in progress, done or not going ahead"):
        service.parse_status("finished")


def test_a_summary_quotes_a_bounded_share_of_free_text_so_it_fits_one_message():
    questions = [Question(1, TEXT, "Why?"), Question(2, TEXT, "What else?")]
    bundles = [(f"@p{n}:x", {1: "word " * 100, 2: "short"}) for n in range(500)]
    s = summarise(questions, bundles, show_texts=True)
    first, second = s.results
    assert len(first.texts) == service.TEXTS_SHOWN // 2 and first.more_texts == 500 - 30
    assert all(len(text) <= service.TEXT_SHOWN_LENGTH for _, text in first.texts)
    assert first.texts[0][1].endswith("…") and second.texts[0][1] == "short"
    assert first.answered == 500


def test_what_stops_a_response_or_an_update_says_what_to_type():
    refuse = service.publish_refusal
    assert "close it first with !consult close C-2" in refuse("open", "response", "C-2", "x", "!")
    assert "!update C-2 in progress|done" in refuse("responded", "response", "C-2", "x", "!")
    assert "!respond C-2 <text>" in refuse("closed", "update", "C-2", "x", "!")
    assert "!respond C-2 …" in refuse("closed", "response", "C-2", "", "!")
    assert refuse("closed", "response", "C-2", "x", "!") == ""
    assert refuse("updated", "update", "C-2", "x", "!") == ""
