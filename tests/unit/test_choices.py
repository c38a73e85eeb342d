"""Choices as residents type them (issue 22 §4): by option text in any case, by number or by
letter, separated by commas, "and" or spaces; and yes or no with the politeness people add."""

from __future__ import annotations

import pytest

from civicbot.core.text import ChoiceError, list_choices, read_choices, yes_or_no

STALLS = ["Cakes", "Books", "Plants", "Mulled wine"]
NIGHTS = ["Most nights", "Weekends only", "Never"]


@pytest.mark.parametrize(
    ("typed", "picked"),
    [
        ("Cakes, Mulled wine", [0, 3]),
        ("cakes", [0]),
        ("MULLED WINE", [3]),
        ("1, 4", [0, 3]),
        ("1 4", [0, 3]),
        ("cakes and mulled wine", [0, 3]),
        ("a, d", [0, 3]),
        ("“Mulled wine”.", [3]),
        ("#2", [1]),
        ("mulled", [3]),
        ("plants > cakes > 2", [2, 0, 1]),
        ("Books please", [1]),
    ],
)
def test_choices_by_text_number_or_letter(typed, picked):
    assert read_choices(typed, STALLS) == picked


def test_whole_option_texts_come_before_their_words():
    assert read_choices("most nights", NIGHTS) == [0]
    assert read_choices("Fish and chips", ["Fish", "Fish and chips", "Chips"]) == [1]
    assert read_choices("Saturday and Sunday", ["Friday", "Saturday", "Sunday"]) == [1, 2]
    assert read_choices("Bridges, Birds", ["Trees", "Birds", "Bridges"]) == [2, 1]


@pytest.mark.parametrize(
    ("typed", "reason", "token"),
    [
        ("cheese", "unknown", "cheese"),
        ("cakes, tea", "unknown", "tea"),
        ("7", "range", "7"),
        ("0", "range", "0"),
        ("z", "unknown", "z"),
    ],
)
def test_unknown_choices_are_named(typed, reason, token):
    with pytest.raises(ChoiceError) as caught:
        read_choices(typed, STALLS)
    assert (caught.value.reason, caught.value.token) == (reason, token)


def test_an_ambiguous_start_names_the_candidates():
    with pytest.raises(ChoiceError) as caught:
        read_choices("bri", ["Bridges", "Bricks", "Birds"])
    assert caught.value.reason == "ambiguous" and caught.value.candidates == [0, 1]


def test_choices_are_listed_for_a_reply():
    assert list_choices(STALLS) == "1 Cakes, 2 Books, 3 Plants, 4 Mulled wine"
    assert list_choices(NIGHTS, letters=True) == "a) Most nights, b) Weekends only, c) Never"
    assert list_choices(STALLS, limit=2) == "1 Cakes, 2 Books and 2 more"


@pytest.mark.parametrize(
    ("typed", "meaning"),
    [
        ("yes", True),
        ("Yes please", True),
        ("yes please!", True),
        ("ok, thanks", True),
        ("please", True),
        ("No thank you.", False),
        ("no thanks", False),
        ("nope", False),
        ("yes but not on sundays", None),
        ("maybe", None),
        ("", None),
    ],
)
def test_yes_or_no_with_politeness(typed, meaning):
    assert yes_or_no(typed) is meaning
