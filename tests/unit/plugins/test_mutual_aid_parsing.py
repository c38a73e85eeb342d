"""Reading !offer / !need, ids, hours and the content limits; suggesting a category."""

from __future__ import annotations

from datetime import timedelta

import pytest
from civicbot_plugins.mutual_aid.categories import category_named, expand, suggest_category
from civicbot_plugins.mutual_aid.parsing import (
    ANYTIME,
    NEED,
    OFFER,
    THIS_WEEK,
    TODAY,
    AidInputError,
    format_minutes,
    format_post_id,
    parse_hours,
    parse_post,
    parse_post_id,
)


def test_a_plain_need_gets_defaults_and_a_suggested_category():
    spec = parse_post(NEED, "help moving a sofa on saturday")
    assert spec.description == "help moving a sofa on saturday"
    assert spec.category == "moving" and spec.category_suggested
    assert spec.urgency == ANYTIME
    assert spec.expires_in == timedelta(days=14)
    assert not spec.ongoing and spec.edit_of is None


def test_optional_parts_in_any_order():
    spec = parse_post(
        NEED, "help moving a sofa | this week | area: Elm Road | expires in 5 days | category diy"
    )
    assert spec.urgency == THIS_WEEK
    assert spec.area == "Elm Road"
    assert spec.expires_in == timedelta(days=5)
    assert spec.category == "diy" and not spec.category_suggested


def test_new_lines_split_parts_and_a_bare_category_name_counts():
    spec = parse_post(OFFER, "lifts to the hospital on weekdays\ntransport\none-off")
    assert spec.category == "transport" and not spec.category_suggested
    assert spec.ongoing is False


def test_offers_are_ongoing_unless_one_off():
    assert parse_post(OFFER, "I have a ladder to lend").ongoing is True
    assert parse_post(OFFER, "a pram to give away | once").ongoing is False


def test_urgency_words_inside_the_description_stay_text():
    spec = parse_post(NEED, "someone to walk my dog today and tomorrow")
    assert spec.urgency == ANYTIME
    assert parse_post(NEED, "dog walk | urgent").urgency == TODAY


def test_re_posting_with_the_id_is_an_edit():
    spec = parse_post(NEED, "N-42 | help moving a sofa and a bed | today")
    assert spec.edit_of == 42 and spec.description == "help moving a sofa and a bed"
    assert parse_post(NEED, "n42 help moving a bed").edit_of == 42


def test_editing_with_the_wrong_kind_of_id_says_what_to_type():
    with pytest.raises(AidInputError, match="!offer O-7"):
        parse_post(NEED, "O-7 | a ladder")


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("", "!need help moving"),
        ("sofa | purple", "I don't understand"),
        ("sofa | expires in 200 days", "expires in 7 days"),
        ("sofa | category spaceships", "Choose one of"),
        ("sofa | ongoing", "Only offers"),
    ],
)
def test_bad_needs_get_a_reply_saying_what_to_type(text, hint):
    with pytest.raises(AidInputError, match=hint):
        parse_post(NEED, text)


def test_a_10kb_post_is_refused_kindly():
    with pytest.raises(AidInputError, match="too long"):
        parse_post(NEED, "please help " * 900)


def test_a_long_description_is_refused_even_if_the_whole_is_short():
    with pytest.raises(AidInputError, match="under 500"):
        parse_post(NEED, "x" * 600)


@pytest.mark.parametrize("ping", ["@room", "hey @ROOM", "@everyone", "@here please"])
def test_room_pings_are_refused(ping):
    with pytest.raises(AidInputError, match="@room"):
        parse_post(NEED, f"help moving a sofa {ping}")


def test_mass_mentions_are_refused_but_one_name_is_fine():
    parse_post(OFFER, "gardening with @sam:example.org")
    many = " ".join(f"@u{i}:example.org" for i in range(3))
    with pytest.raises(AidInputError, match="at most 2 people"):
        parse_post(NEED, f"sofa {many}")


def test_an_email_address_is_not_a_room_ping():
    parse_post(OFFER, "maths tutoring, write to ann@roomful.org")


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("2h", 120), ("90m", 90), ("1.5 hours", 90), ("1h30", 90), ("45 minutes", 45), ("1h 15m", 75)],
)
def test_hours(text, minutes):
    assert parse_hours(text) == minutes


@pytest.mark.parametrize("text", ["lots", "0h", "-2h", "30 hours", ""])
def test_bad_hours(text):
    with pytest.raises(AidInputError):
        parse_hours(text)


def test_minutes_are_shown_plainly():
    assert [format_minutes(m) for m in (90, 120, 45, -30)] == ["1h 30m", "2h", "45m", "-30m"]


def test_ids_round_trip_and_bad_ids_say_what_ids_look_like():
    assert parse_post_id("N-42") == (NEED, 42)
    assert parse_post_id(" o7 ") == (OFFER, 7)
    assert format_post_id(OFFER, 7) == "O-7"
    with pytest.raises(AidInputError, match="N-42"):
        parse_post_id("P-3")


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("help moving a sofa", "moving"),
        ("need a lift to the hosptial", "transport"),
        ("can someone do my shoping", "groceries"),
        ("perscription from boots", "medicine"),
        ("walk my dog", "pets"),
        ("the weather is nice", None),
    ],
)
def test_category_suggestions_forgive_typos(text, category):
    assert suggest_category(text) == category


def test_category_names_forgive_a_typo_but_not_nonsense():
    assert category_named("Transport") == "transport"
    assert category_named("trasnport") == "transport"
    assert category_named("xyz") is None


def test_synonyms_expand_both_ways():
    assert {"lift", "drive", "ride"} <= set(expand("a lift"))
    assert "pram" in expand("a buggy") and "buggy" in expand("a pram")
    assert "shopping" in expand("shoping")  # the typo corrected, then expanded
