"""!help as plain-text clients and bridges see it (issue 9 item 11)."""

from __future__ import annotations

import re

from civicbot.testing.harness import BotHarness

ANN = "@ann:test"


def last_content(h: BotHarness) -> dict:
    return h.transport.sent[-1].content


async def test_command_help_is_unwrapped_and_has_no_literal_backticks(tmp_path):
    async with BotHarness.create(tmp_path) as h:
        room = h.room()
        await h.say(room, ANN, "!help poll")
        content = last_content(h)
        text = content["body"]
        assert "`" not in text
        # The docstring's hard wrap ("in a\nweek") is joined back: the client wraps lines.
        assert "closes in 3 days (default: in a week), up to 2 (multiple choice)" in text
        assert "<code>closes friday 18:00</code>" in content["formatted_body"]

        await h.say(room, ANN, "!help help")
        content = last_content(h)
        # A backticked command is what to type, so it gets the prefix.
        assert "for example !help poll or !help poll close." in content["body"]
        assert "<code>!help poll</code>" in content["formatted_body"]


async def test_help_escapes_html_and_keeps_paragraphs(tmp_path):
    from civicbot_plugins.help.prose import as_html, as_text

    doc = "Say <b>hi</b>:\n`poll x` works.\n\nSecond `<i>` part."
    assert as_text(doc, "!", {"poll"}) == "Say <b>hi</b>: !poll x works.\n\nSecond <i> part."
    assert [str(p) for p in as_html(doc, "!", {"poll"})] == [
        "Say &lt;b&gt;hi&lt;/b&gt;: <code>!poll x</code> works.",
        "Second <code>&lt;i&gt;</code> part.",
    ]


async def test_help_texts_and_examples_name_no_fixed_date(tmp_path):
    # Issue 22 §4: help examples like "tue 2 dec 18:00" go stale (and, once the weekday no
    # longer matches, are refused); they use "next tuesday 18:00" and the like instead.
    months = (
        "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
        "sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
    )
    fixed = re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)? (?:{months})\b|\b20\d\d-\d\d-\d\d\b", re.I)
    async with BotHarness.create(tmp_path) as h:
        commands = h.bot.index.unique()
        assert commands
        for spec in commands:
            for text in (*spec.examples, spec.func.__doc__ or ""):
                assert not fixed.search(text), (spec.name, fixed.search(text))


async def test_every_help_line_is_whole_sentences(tmp_path):
    # Issue 22 §5: a help line was the docstring's first source line, cut off mid-sentence
    # ("... (to you, in a thread); in a") where the source wrapped.
    async with BotHarness.create(tmp_path) as h:
        for command in h.bot.commands():
            assert command.help.endswith((".", "?", "!", ")")), (command.name, command.help)
        room = h.room()
        await h.say(room, ANN, "!help digest preview")
        assert "in a direct message, your own personal digest." in h.last_text(room)
