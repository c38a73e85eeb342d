"""Every polls command with odd input gets a reply that says what to do, never the apology."""

from __future__ import annotations

import pytest

from civicbot.testing.harness import MODERATOR
from tests.unit.plugins.polls_support import ANN, BOB, dm_room, polls_harness

APOLOGY = "Sorry, something went wrong"
ODD = [
    "",
    " ",
    "²",
    "١",
    "٣ ١",
    "0",
    "-1",
    "1e400",
    "99999999999999999999999",
    "9" * 5000,
    "x" * 5000,
    "“curly” ‘quotes’",
    "| | |",
    "|",
    "\n\n",
    "🗳️",
    "P-1",
    "in 99999999999 days",
    "block " + "because " * 100,
    "\u202e\u200b",
    '"',
    "“”",
    "'up to'",
    "until",
    "up to you",
]
# P-1 single choice, P-2 ranked, P-3 proposal, P-4 secret, P-5 closed; {x} is the odd part.
COMMANDS = [
    "!poll {x}",
    "!poll {x} | A | B",
    "!poll Q? | {x} | B",
    "!poll Q? | A | B | {x}",
    "!poll Q? | A | B | closes {x}",
    "!poll Q? | A | B | closes in {x} days",
    "!poll Q? | A | B | up to {x}",
    "!poll close {x}",
    "!poll show {x}",
    "!poll edit {x}",
    "!poll edit P-1 {x}",
    "!poll edit P-1 Q? | A | {x}",
    "!poll edit P-5 Q? | A | {x}",
    "!poll cancel {x}",
    "!vote {x} 1",
    "!vote P-1 {x}",
    "!vote P-2 {x}",
    "!vote P-3 {x}",
    "!vote P-4 {x}",
    "!vote P-5 {x}",
    "!rank P-1 {x}",
    "!rank P-2 {x}",
    "!polls {x}",
    "!outcome P-5 {x}",
    "!outcome P-5 done | review {x}",
    "!outcome P-5 done | review in {x} days",
    "!outcome {x}",
]


@pytest.mark.parametrize("template", COMMANDS)
async def test_odd_input_never_gets_the_apology(tmp_path, template):
    async with polls_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        for setup in (
            "!poll Q? | A | B",
            "!poll R? | A | B | C | ranked",
            "!poll S? | proposal",
            "!poll T? | A | B | secret",
            "!poll U? | A | B",
            "!poll close P-5",
        ):
            await h.say(room, ANN, setup)
        dm = dm_room(h, ANN)
        for odd in ODD:
            text = template.format(x=odd)
            for where, who in ((room, ANN), (room, MODERATOR), (dm, ANN)):
                said = len(h.texts())
                await h.say(where, who, text)
                replies = h.texts()[said:]
                assert replies, (text[:80], who)
                assert not any(APOLOGY in reply for reply in replies), (text[:80], replies)
