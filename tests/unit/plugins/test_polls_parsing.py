"""Reading what residents type for polls, votes, rankings and outcomes."""

from __future__ import annotations

import re

import pytest
from civicbot_plugins.polls.choices import VoteError, parse_choice, parse_ranking
from civicbot_plugins.polls.parsing import PollInputError, parse_outcome, parse_poll_input
from civicbot_plugins.polls.service import PROPOSAL_OPTIONS, PollKind


def test_pipes_and_settings():
    spec = parse_poll_input("Which day? | Saturday | Sunday | closes friday 18:00")
    assert spec.question == "Which day?"
    assert [o.text for o in spec.options] == ["Saturday", "Sunday"]
    assert [o.id for o in spec.options] == ["1", "2"]
    assert spec.kind is PollKind.SINGLE and spec.max_selections == 1
    assert spec.closes_text == "friday 18:00"


def test_new_lines_and_list_markers():
    spec = parse_poll_input("Which day?\n\n1. Saturday\n2) Sunday\n- Monday\nsecret\nhidden")
    assert [o.text for o in spec.options] == ["Saturday", "Sunday", "Monday"]
    assert spec.secret and spec.hidden


def test_secret_implies_hidden_results():
    assert parse_poll_input("Q? | a | b | secret ballot").hidden


def test_an_option_that_only_looks_like_a_setting_stays_an_option():
    spec = parse_poll_input("What now? | Close the road | Keep it open | Secret santa")
    assert [o.text for o in spec.options] == ["Close the road", "Keep it open", "Secret santa"]
    assert not spec.secret


@pytest.mark.parametrize(
    ("text", "kind", "limit"),
    [
        ("Q? | a | b | c | multiple", PollKind.MULTIPLE, 3),
        ("Q? | a | b | c | up to 2", PollKind.MULTIPLE, 2),
        ("Q? | a | b | c | choose up to 9", PollKind.MULTIPLE, 3),
        ("Q? | a | b | c | up to 1", PollKind.SINGLE, 1),
        ("Q? | a | b | c | ranked", PollKind.RANKED, 3),
        ("Q? | a | b | ranked choice", PollKind.RANKED, 2),
    ],
)
def test_kinds(text, kind, limit):
    spec = parse_poll_input(text)
    assert spec.kind is kind
    assert spec.max_selections == limit


def test_proposal_has_fixed_answers():
    spec = parse_poll_input("Adopt the new bin rota? | proposal | closes in 3 days")
    assert spec.kind is PollKind.PROPOSAL
    assert spec.options == list(PROPOSAL_OPTIONS)
    assert spec.closes_text == "in 3 days"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Start with the question"),
        ("Q? | a", "at least two options"),
        ("Q?", "at least two options"),
        ("Q? | a | | b", "Option 2 is empty"),
        ("Q? | Sat | sun | SAT", "Option 3 ('SAT') is the same as option 1"),
        (
            "Q? | " + " | ".join(f"o{i}" for i in range(21)),
            "21 options; a poll can have at most 20",
        ),
        ("Q" * 301 + " | a | b", "301 characters long; keep it under 300"),
        ("Q? | " + "x" * 201 + " | b", "Option 1 is 201 characters"),
        ("Q? | a | b | ranked | up to 2", "can't be both ranked and multiple"),
        ("Q? | a | b | proposal", "leave out the options"),
        ("Q? | a | b | closes friday | closes monday", "two closing times"),
        ("Q? | a | b | closes", "Say when it closes"),
    ],
)
def test_bad_polls_say_what_is_wrong(text, message):
    with pytest.raises(PollInputError, match=re.escape(message)):
        parse_poll_input(text)


def test_a_trailing_pipe_is_forgiven():
    assert len(parse_poll_input("Q? | a | b |").options) == 2


OPTIONS = parse_poll_input("Q? | Saturday | Sunday | Monday").options


def test_choices_by_number_or_label():
    assert parse_choice("2", PollKind.SINGLE, OPTIONS, 1, "P-1").answers == ["2"]
    assert parse_choice("sunday", PollKind.SINGLE, OPTIONS, 1, "P-1").answers == ["2"]
    assert parse_choice("1, 3", PollKind.MULTIPLE, OPTIONS, 2, "P-1").answers == ["1", "3"]
    assert parse_choice("1 and 3", PollKind.MULTIPLE, OPTIONS, 3, "P-1").answers == ["1", "3"]
    assert parse_choice("withdraw", PollKind.SINGLE, OPTIONS, 1, "P-1").answers == []


@pytest.mark.parametrize(
    ("text", "limit", "message"),
    [
        ("1 2", 1, "P-1 takes one choice"),
        ("1 2 3", 2, "up to 2; you gave 3"),
        ("4", 1, "options 1 to 3; there is no 4"),
        ("tuesday", 1, "didn't understand 'tuesday'"),
    ],
)
def test_bad_choices(text, limit, message):
    kind = PollKind.SINGLE if limit == 1 else PollKind.MULTIPLE
    with pytest.raises(VoteError, match=message):
        parse_choice(text, kind, OPTIONS, limit, "P-1")


def test_proposal_positions_and_blocks_need_a_reason():
    options = list(PROPOSAL_OPTIONS)
    assert parse_choice("agree", PollKind.PROPOSAL, options, 1, "P-2").answers == ["agree"]
    assert parse_choice("No", PollKind.PROPOSAL, options, 1, "P-2").answers == ["disagree"]
    assert parse_choice("2", PollKind.PROPOSAL, options, 1, "P-2").answers == ["abstain"]
    block = parse_choice("block it ignores night workers", PollKind.PROPOSAL, options, 1, "P-2")
    assert block.answers == ["block"] and block.reason == "it ignores night workers"
    with pytest.raises(VoteError, match="please say why"):
        parse_choice("block", PollKind.PROPOSAL, options, 1, "P-2")
    with pytest.raises(VoteError, match="agree, abstain, disagree or block"):
        parse_choice("maybe", PollKind.PROPOSAL, options, 1, "P-2")


def test_rankings():
    assert parse_ranking("3 1 2", OPTIONS, "P-3") == ["3", "1", "2"]
    assert parse_ranking("3 > 1", OPTIONS, "P-3") == ["3", "1"]
    assert parse_ranking("2,3", OPTIONS, "P-3") == ["2", "3"]
    with pytest.raises(VoteError, match="ranked option 1 twice"):
        parse_ranking("1 1 2", OPTIONS, "P-3")
    with pytest.raises(VoteError, match="favourite first"):
        parse_ranking("birds", OPTIONS, "P-3")


def test_outcomes_with_a_review_date():
    spec = parse_outcome("Litter pick on Saturday 10am | review in 4 weeks")
    assert spec.text == "Litter pick on Saturday 10am"
    assert spec.review_text == "in 4 weeks"
    assert parse_outcome("Review the rota with the council").review_text is None
    assert parse_outcome("We go ahead\nreview on 1 March").review_text == "1 March"
    with pytest.raises(PollInputError, match="Write what was decided"):
        parse_outcome("  ")


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("²", PollKind.SINGLE, "didn't understand '²'"),
        ("1 ²", PollKind.MULTIPLE, "didn't understand '²'"),
        ("²", PollKind.RANKED, "didn't understand '²'"),
        ("²", PollKind.PROPOSAL, "agree, abstain, disagree or block"),
        ("9" * 5000, PollKind.SINGLE, "there is no 99999999999999999999\\."),
        ("9" * 5000, PollKind.PROPOSAL, "agree, abstain, disagree or block"),
        ("0", PollKind.SINGLE, "there is no 0"),
    ],
)
def test_odd_numbers_are_refused_not_crashed_on(text, kind, message):
    options = list(PROPOSAL_OPTIONS) if kind is PollKind.PROPOSAL else OPTIONS
    with pytest.raises(VoteError, match=message):
        parse_choice(text, kind, options, 2, "P-1")


def test_digits_of_other_scripts_count():
    # Phones set to Arabic type ١٢٣; they are decimal digits, so they are read as numbers.
    assert parse_choice("٣", PollKind.SINGLE, OPTIONS, 1, "P-1").answers == ["3"]
    assert parse_ranking("٢ ١", OPTIONS, "P-3") == ["2", "1"]
    proposal = list(PROPOSAL_OPTIONS)
    assert parse_choice("١", PollKind.PROPOSAL, proposal, 1, "P-2").answers == ["agree"]
    assert parse_poll_input("Q? | a | b | c | up to ٢").max_selections == 2


def test_up_to_zero_is_refused():
    with pytest.raises(PollInputError, match="'up to 0' leaves nothing to choose"):
        parse_poll_input("Which stalls? | cakes | books | up to 0")
    assert parse_poll_input("Which stalls? | cakes | books | multiple").max_selections == 2


STALLS = parse_poll_input("Which stalls? | Cakes | Books | Plants | Mulled wine").options


def test_several_choices_by_option_text_as_typed_on_a_phone():
    # Issue 22 §4: "Cakes, Mulled wine" was "I didn't understand 'Cakes'".
    assert parse_choice("Cakes, Mulled wine", PollKind.MULTIPLE, STALLS, 4, "P-8").answers == [
        "1",
        "4",
    ]
    assert parse_choice("cakes and books", PollKind.MULTIPLE, STALLS, 4, "P-8").answers == [
        "1",
        "2",
    ]
    assert parse_choice("1, 4", PollKind.MULTIPLE, STALLS, 4, "P-8").answers == ["1", "4"]
    assert parse_ranking("Plants, Cakes", STALLS, "P-3") == ["3", "1"]


def test_an_unknown_choice_lists_the_options():
    listed = "didn't understand 'Tea'. The options are 1 Cakes, 2 Books"
    with pytest.raises(VoteError, match=re.escape(listed)):
        parse_choice("Cakes, Tea", PollKind.MULTIPLE, STALLS, 4, "P-8")
    options = parse_poll_input("Q? | Bridges | Bricks | Birds").options
    with pytest.raises(VoteError, match="'bri' could be 1 Bridges or 2 Bricks"):
        parse_choice("bri", PollKind.SINGLE, options, 1, "P-8")
