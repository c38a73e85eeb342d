"""Cleaning text residents type before the bot compares it or says it back.

Two strings that look the same to a person must be the same to the bot, and nothing the bot
echoes may reorder or hide the text around it::

    clean_text("Sat\u200burday")   # 'Saturday': a zero-width space is invisible
    clean_text("\u202eyadrutaS")   # 'yadrutaS': a right-to-left override is never echoed
    same_text("Café", "CAFE\u0301")  # True: one option, however it was typed

:func:`clean_text` is for what is kept and echoed (NFC, invisible and bidi control characters
removed, joiners kept only where a script or an emoji needs them); :func:`comparison_key` is for
deciding whether two texts are the same (also case- and width-insensitive).
"""

from __future__ import annotations

import re
import unicodedata

# Explicit direction controls (embeddings, overrides, isolates, marks). Text shown by a client
# gets its direction from its letters; these only ever make a reply read differently from what
# was stored (the "Trojan Source" trick).
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Characters with no visible form that make two identical-looking strings different: zero-width
# space, word joiner, byte-order mark, Mongolian vowel separator, soft hyphen, invisible math
# operators, and the Hangul fillers used as "blank" names.
INVISIBLE = frozenset(
    "\u200b\u2060\ufeff\u180e\u00ad\u2061\u2062\u2063\u2064\u115f\u1160\u3164\uffa0"
)
ZWNJ, ZWJ = "\u200c", "\u200d"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0/C1 controls except \t and \n


def clean_text(text: str) -> str:
    """``text`` as it should be stored and echoed: NFC-normalised, without bidi controls,
    invisible characters or control characters (new lines and tabs stay).

    Zero-width joiners and non-joiners stay only where they shape what is read: a joiner
    between two symbols builds an emoji (👩‍💻), and both matter between the letters of scripts
    such as Persian or Devanagari. Anywhere else they change nothing a reader can see, so they
    go."""
    text = unicodedata.normalize("NFC", text)
    if text.isascii():
        return _CONTROL.sub("", text)
    kept: list[str] = []
    for index, char in enumerate(text):
        if char in BIDI_CONTROLS or char in INVISIBLE:
            continue
        if char in (ZWJ, ZWNJ) and not _joins(text, index):
            continue
        kept.append(char)
    return _CONTROL.sub("", "".join(kept))


def _joins(text: str, index: int) -> bool:
    before = text[index - 1] if index > 0 else ""
    after = text[index + 1] if index + 1 < len(text) else ""
    if not before or not after:
        return False
    kinds = unicodedata.category(before)[0], unicodedata.category(after)[0]
    # Between letters only in scripts that spell with joiners (Arabic, Persian, Indic, ...):
    # in Latin text a joiner changes nothing but the bytes.
    in_script = ord(before) >= 0x0590 and kinds[0] in "LM" and kinds[1] in "LM"
    if text[index] == ZWNJ:
        return in_script
    # An emoji before a ZWJ may end in a variation selector or skin tone (Mn, Sk).
    return in_script or (kinds[0] in "SM" and kinds[1] == "S")


def comparison_key(text: str) -> str:
    """What two texts must share to count as the same: :func:`clean_text`, no joiners at all,
    NFKC (full-width letters are letters), case folded, runs of white space as one space."""
    cleaned = clean_text(text).replace(ZWJ, "").replace(ZWNJ, "")
    folded = unicodedata.normalize("NFKC", cleaned.casefold())
    return " ".join(folded.split())


def same_text(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` read as the same text (see :func:`comparison_key`)."""
    return comparison_key(a) == comparison_key(b)
