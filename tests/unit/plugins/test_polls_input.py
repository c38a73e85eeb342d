"""Settings as people write them, quotes from phones, and text that only looks the same."""

from __future__ import annotations

import re

import pytest
from civicbot_plugins.polls.choices import parse_choice, parse_ranking
from civicbot_plugins.polls.parsing import PollInputError, UnclearSetting, parse_poll_input
from civicbot_plugins.polls.service import PollKind

from civicbot.core.text import clean_text, comparison_key, same_text


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("Which stalls? | Cakes | Books | Plants | Games | up to two", 2),
        ("Which stalls? | Cakes | Books | Plants | Games | up to three", 3),
        ("Which stalls? | Cakes | Books | Plants | Games | pick two", 2),
        ("Which stalls? | Cakes | Books | Plants | Games | at most 3 options", 3),
        ("Which stalls? | Cakes | Books | Plants | Games | choose up to two", 2),
    ],
)
def test_number_words_set_the_limit_instead_of_becoming_an_option(text, limit):
    spec = parse_poll_input(text)
    assert [o.text for o in spec.options] == ["Cakes", "Books", "Plants", "Games"]
    assert spec.kind is PollKind.MULTIPLE and spec.max_selections == limit


@pytest.mark.parametrize(
    ("last", "when"),
    [
        ("close friday", "friday"),
        ("closing friday 18:00", "friday 18:00"),
        ("ends sunday", "sunday"),
        ("until friday", "friday"),
        ("open until 2 Dec 6pm", "2 Dec 6pm"),
        ("close on friday.", "friday"),
    ],
)
def test_closing_words_people_use(last, when):
    spec = parse_poll_input(f"Which day? | Saturday | Sunday | {last}")
    assert [o.text for o in spec.options] == ["Saturday", "Sunday"]
    assert spec.closes_text == when
    assert spec.closes_loose == (not last.startswith("closing"))


def test_loose_closing_words_inside_the_options_stay_options():
    spec = parse_poll_input("What now? | Close the road | Until it rains | Keep it open")
    assert [o.text for o in spec.options] == ["Close the road", "Until it rains", "Keep it open"]
    assert spec.closes_text is None


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        ("Who decides? | Council | Residents | up to you", "'up to you' an option"),
        ("Which mural? | Birds | Bikes | rankd", "the setting 'ranked'"),
        ("Which mural? | Birds | Bikes | secrit | close friday", "the setting 'secret'"),
    ],
)
def test_a_last_part_that_looks_like_a_setting_is_asked_about(text, asked):
    with pytest.raises(UnclearSetting, match=re.escape(asked)) as caught:
        parse_poll_input(text)
    assert "put it in quotes" in str(caught.value)


def test_a_word_that_merely_resembles_a_setting_is_an_option():
    spec = parse_poll_input("Who should we elect? | Chair | Treasurer | Secretary")
    assert [o.text for o in spec.options] == ["Chair", "Treasurer", "Secretary"]
    assert not spec.secret
    spec = parse_poll_input("Library? | Open | Closed")
    assert [o.text for o in spec.options] == ["Open", "Closed"]
    spec = parse_poll_input("Library? | Open daily | Closed on Sundays")
    assert [o.text for o in spec.options] == ["Open daily", "Closed on Sundays"]
    spec = parse_poll_input("Saturday? | Plant bulbs | Pick up litter")
    assert [o.text for o in spec.options] == ["Plant bulbs", "Pick up litter"]


def test_quotes_make_a_part_an_option_whatever_it_says():
    spec = parse_poll_input('Who decides? | Council | Residents | "up to you" | “close friday”')
    assert [o.text for o in spec.options] == ["Council", "Residents", "up to you", "close friday"]
    assert spec.closes_text is None and spec.kind is PollKind.SINGLE


def test_a_taken_closing_time_is_named_when_too_few_options_are_left():
    with pytest.raises(PollInputError, match="I read 'Until Monday' as the closing time"):
        parse_poll_input("How long? | Until Friday | Until Monday")


def test_quotes_and_full_stops_around_the_question_and_options_go():
    spec = parse_poll_input("“Which hall?” | “Church hall” | 'Scout hut'. | \"Library\",")
    assert spec.question == "Which hall?"
    assert [o.text for o in spec.options] == ["Church hall", "Scout hut", "Library"]


OPTIONS = parse_poll_input("Q? | Saturday | Sunday | Monday").options


@pytest.mark.parametrize("typed", ["“Saturday”", '"Saturday"', "Saturday.", "‘saturday’.", "'1'"])
def test_quoted_or_punctuated_choices_are_read(typed):
    assert parse_choice(typed, PollKind.SINGLE, OPTIONS, 1, "P-1").answers == ["1"]


def test_quoted_proposal_positions_and_rankings():
    from civicbot_plugins.polls.service import PROPOSAL_OPTIONS

    proposal = list(PROPOSAL_OPTIONS)
    assert parse_choice("“agree”.", PollKind.PROPOSAL, proposal, 1, "P-2").answers == ["agree"]
    assert parse_ranking('"3" "1"', OPTIONS, "P-3") == ["3", "1"]


def test_an_invisible_character_does_not_make_a_second_option():
    with pytest.raises(PollInputError, match=re.escape("Option 2 ('a') is the same as option 1")):
        parse_poll_input("Q? | a | a\u200b")
    with pytest.raises(PollInputError, match="is the same as option 1"):
        parse_poll_input("Q? | Cafe\u0301 | CAFÉ")  # decomposed and composed: one word


def test_bidi_overrides_never_reach_the_options_or_the_question():
    spec = parse_poll_input("Which\u202e day? | Sat\u2066urday | \u202eSunday")
    assert spec.question == "Which day?"
    assert [o.text for o in spec.options] == ["Saturday", "Sunday"]
    # A choice typed with hidden characters still finds its option.
    assert parse_choice("sun\u200bday", PollKind.SINGLE, spec.options, 1, "P-1").answers == ["2"]


def test_clean_text_keeps_what_scripts_and_emoji_need():
    assert clean_text("👩\u200d💻") == "👩\u200d💻"  # an emoji built with a joiner
    assert clean_text("می\u200cخواهم") == "می\u200cخواهم"  # Persian spelling needs the ZWNJ
    assert clean_text("a\u200cb\u200dc") == "abc"  # in Latin text they only change the bytes
    assert clean_text("line one\nline\ttwo\x07") == "line one\nline\ttwo"
    assert clean_text("Cafe\u0301") == "Café" and len(clean_text("Cafe\u0301")) == 4


def test_comparison_key_and_same_text():
    assert comparison_key("  Ｃａｆé   Bar ") == "café bar"
    assert same_text("a", "a\u200b") and same_text("Saturday", "SATURDAY\u200e")
    assert not same_text("Saturday", "Sunday")


async def test_through_the_bot_settings_are_read_and_doubts_are_asked(tmp_path):
    from tests.unit.plugins.polls_support import ANN, BOB, polls_harness, start_event

    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Which stalls? | Cakes | Books | Plants | up to two")
        assert "Choose up to 2." in h.last_text(room) and "4. up to two" not in h.last_text(room)
        assert start_event(h).content[START]["max_selections"] == 2
        await h.say(room, ANN, "!poll Which day? | Saturday | Sunday | close friday")
        assert "Closes Fri 27 Nov 18:00 Europe/London" in h.last_text(room)
        assert "3. close friday" not in h.last_text(room)
        sent = len(h.transport.sent)
        await h.say(room, ANN, "!poll What now? | Keep it open | Reopen it | Close the road")
        asked = h.last_text(room)
        assert "I couldn't read 'the road' as a time." in asked
        assert "Is 'Close the road' an option? Then put it in quotes" in asked
        assert len(h.transport.sent) == sent + 1  # a question back, no poll
        await h.say(room, ANN, '!poll What now? | Keep it open | Reopen it | "Close the road"')
        assert "3. Close the road" in h.last_text(room)
        await h.say(room, ANN, "!poll Who decides? | Council | Residents | up to you")
        assert "Is 'up to you' an option" in h.last_text(room)
        assert "For example:" not in h.last_text(room)
        await h.say(room, ANN, '!poll “Which hall?” | “Church hall” | "Scout hut"')
        assert h.last_text(room).startswith("📊 P-4: Which hall?\n1. Church hall\n2. Scout hut")
        for typed in ("“Church hall”", '"Scout hut"', "Church hall."):
            await h.say(room, BOB, f"!vote P-4 {typed}")
            assert "✅ Counted" in h.last_text(room), typed


START = "org.matrix.msc3381.poll.start"


async def test_direction_overrides_in_reasons_and_outcomes_are_not_echoed(tmp_path):
    from tests.unit.plugins.polls_support import ANN, BOB, polls_harness

    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await h.say(room, ANN, "!poll Move the bins? | proposal")
        await h.say(room, BOB, "!vote P-1 block \u202enoitatsnoc\u202c the street is narrow")
        await h.say(room, ANN, "!poll close P-1")
        assert "• @bob:test: noitatsnoc the street is narrow" in h.last_text(room)
        await h.say(room, ANN, "!outcome P-1 We\u2066 wait\u200b for the survey")
        texts = h.texts(room)
        assert any("We wait for the survey" in t for t in texts)
        assert not any(c in t for t in texts for c in "\u202e\u202c\u2066\u200b")
