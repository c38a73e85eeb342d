"""Reading a post, its refusal answered as a command's (the reply says what to type)."""

from __future__ import annotations

from civicbot_plugins.mutual_aid.parsing import AidInputError, PostSpec, parse_post

from civicbot.api import CommandError


def read_post(kind: str, text: str) -> PostSpec:
    """:func:`parse_post`, its refusal answered like a command's."""
    try:
        return parse_post(kind, text)
    except AidInputError as error:
        raise CommandError(str(error)) from None
