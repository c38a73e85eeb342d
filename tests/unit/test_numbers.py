"""Every number a person types is range-checked where it is read (issue 21): a 5,000-digit
number gets a short answer saying what to type, never the apology."""

from __future__ import annotations

import pytest

from civicbot.core.converters import Number, UsageError, whole_number
from tests.unit.plugins.consultations_support import (
    ANN,
    CLLR,
    ask,
    consult_harness,
    council_room,
    park,
)
from tests.unit.plugins.meetings_support import meetings_harness

HUGE = "9" * 5000
APOLOGY = "Sorry, something went wrong"


def test_whole_number_reads_and_bounds():
    assert whole_number(" 12 ", 1, 20) == 12
    assert whole_number("#3", 1, 5) == 3
    assert whole_number("-4") == -4
    for bad, low, high in ((HUGE, None, None), ("0", 1, 5), ("6", 1, 5), ("²", None, None)):
        with pytest.raises(UsageError):
            whole_number(bad, low, high)
    with pytest.raises(UsageError, match="from 1 to 5"):
        Number(1, 5).convert("7", None)  # type: ignore[arg-type]


async def test_int_argument_of_any_command_is_bounded(tmp_path):
    from civicbot.core.commands import Parameter, _convert

    param = Parameter("count", int, False, None)
    with pytest.raises(UsageError, match="out of range"):
        await _convert(param, HUGE, None)  # type: ignore[arg-type]
    assert await _convert(param, "42", None) == 42  # type: ignore[arg-type]


async def test_answer_with_five_thousand_digits_is_told_what_to_type(tmp_path):
    async with consult_harness(tmp_path) as h:
        room = await council_room(h)
        await ask(h, room, CLLR, park())
        for text in (f"!answer C-1 {HUGE} yes", f"!answer C-1 2 {HUGE}"):
            reply = await ask(h, room, ANN, text)
            assert APOLOGY not in reply
            assert reply


async def test_meet_fix_with_five_thousand_digits_is_told_what_to_type(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=["@ann:test", "@bob:test"])
        await h.say(room, "@ann:test", "!meet Litter pick | tue 8 dec 18:00 | sat 12 dec 10am")
        before = len(h.transport.sent)
        await h.say(room, "@ann:test", f"!meet fix M-1 {HUGE}")
        said = "\n".join(s.body for s in h.transport.sent[before:])
        assert APOLOGY not in said
        assert "Pick a time by its number, 1 to 2" in said
