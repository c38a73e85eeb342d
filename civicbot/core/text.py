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


# -- choices typed by residents --------------------------------------------------------------------
# Between choices people type commas, "and", "&", "then", ">" (a ranking) or just spaces.
_CHOICE_SEPARATORS = re.compile(r"[\s,;>/|&+]+")
# Words between or after choices that pick nothing: "1 and 3", "Benches please".
_CONNECTORS = frozenset({"and", "then", "or", "plus", "please", "pls", "thanks"})
_TRIM = "\"'“”‘’«»`.!?():[]"
MIN_PREFIX = 3  # "sat" picks Saturday; "s" or "sa" is too little to be sure


class ChoiceError(ValueError):
    """A choice that can't be read. ``reason`` is ``"unknown"`` (nothing by that name),
    ``"ambiguous"`` (``candidates`` holds the options it could be) or ``"range"`` (a number with
    no option); ``token`` is what was typed, cut short for echoing."""

    def __init__(self, reason: str, token: str, candidates: list[int] | None = None):
        self.reason, self.token, self.candidates = reason, token, candidates or []
        super().__init__(f"{reason}: {token}")


def _choice_words(text: str) -> tuple[list[str], list[str]]:
    """The words of ``text`` as typed (for echoing) and as compared, separators dropped."""
    raw: list[str] = []
    keys: list[str] = []
    for word in _CHOICE_SEPARATORS.split(clean_text(text)):
        key = comparison_key(word).strip(_TRIM).lstrip("#")
        if key:
            raw.append(word.strip(_TRIM) or word)
            keys.append(key)
    return raw, keys


def read_choices(text: str, options: list[str]) -> list[int]:
    """The options ``text`` picks, as indexes into ``options`` in the order typed (a repeat is
    kept, so a ranking can refuse it). Each choice may be the option's text in any case (whole
    option texts are matched first, so "Fish and chips" is one choice), its number from 1, its
    letter from a, or the start of one option's text ("sat" for Saturday); choices are separated
    by commas, "and", ">" or spaces. Raises :class:`ChoiceError`."""
    raw, words = _choice_words(text)
    keyed = [" ".join(_choice_words(option)[1]) for option in options]
    picks: list[int] = []
    i = 0
    while i < len(words):
        step, pick = _read_one(raw, words, i, keyed)
        if pick is not None:
            picks.append(pick)
        i += step
    return picks


def _read_one(raw: list[str], words: list[str], i: int, keyed: list[str]) -> tuple[int, int | None]:
    spans = range(len(words), i, -1)
    for end in spans:  # the longest run of words that is a whole option
        found = [n for n, key in enumerate(keyed) if key == " ".join(words[i:end])]
        if len(found) == 1:
            return end - i, found[0]
    word = words[i]
    if word in _CONNECTORS:
        return 1, None
    typed = raw[i].lstrip("#")
    # Digits of any script count ("٣"), but not superscripts ("²"), whatever NFKC makes of them.
    if typed.isdecimal():
        number = int(typed) if len(typed) <= 6 else -1
        if not 1 <= number <= len(keyed):
            raise ChoiceError("range", raw[i].lstrip("#")[:20])
        return 1, number - 1
    if len(word) == 1 and word.isascii() and word.isalpha():
        index = ord(word) - ord("a")
        if index < len(keyed):
            return 1, index
    for end in spans:  # the start of exactly one option
        typed = " ".join(words[i:end])
        if len(typed) < MIN_PREFIX:
            break
        found = [n for n, key in enumerate(keyed) if key.startswith(typed)]
        if len(found) == 1:
            return end - i, found[0]
        if found:
            raise ChoiceError("ambiguous", " ".join(raw[i:end])[:30], found)
    raise ChoiceError("unknown", raw[i][:20])


def list_choices(options: list[str], letters: bool = False, limit: int = 8) -> str:
    """``1 Cakes, 2 Mulled wine, 3 Tea`` (or ``a) Cakes, b) …``): the choices, for a reply that
    says what to type; only the first ``limit`` when there are many."""
    shown = [
        f"{chr(ord('a') + n)}) {text}" if letters and n < 26 else f"{n + 1} {text}"
        for n, text in enumerate(options[:limit])
    ]
    more = len(options) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


_YES = frozenset({"yes", "y", "yep", "yeah", "yup", "ok", "okay", "sure", "please", "aye", "👍"})
_NO = frozenset({"no", "n", "nope", "nah", "👎"})
_POLITE = frozenset(
    {"please", "pls", "plz", "thanks", "thank", "you", "ta", "cheers", "thx", "very", "much"}
)


def yes_or_no(text: str) -> bool | None:
    """True for "yes", "Yes please", "ok thanks!"; False for "no", "No thank you."; None when
    the text is not a plain yes or no ("yes but not on Sundays" is a sentence, not an answer)."""
    words = [w for w in (comparison_key(w).strip(_TRIM) for w in re.split(r"[\s,]+", text)) if w]
    if not words or not all(w in _POLITE for w in words[1:]):
        return None
    if words[0] in _YES or words[0] in _NO:
        return words[0] in _YES
    return None


# -- people named by residents ---------------------------------------------------------------------
def _person_keys(user_id: str, shown: str) -> tuple[str, str, str]:
    localpart = user_id.lstrip("@").split(":", 1)[0]
    return comparison_key(user_id), comparison_key(localpart), comparison_key(shown)


def pick_people(typed: str, names: dict[str, str]) -> list[str]:
    """The people ``typed`` names among ``names`` (``{Matrix id: display name}``), as residents
    name them: the whole id, its short name ("resident2", with or without "@") or the display
    name, in any case; failing those, the start of exactly one of them ("res" is too short).
    One id when it is clear, several when it could be any of them, none when nobody matches.
    A name that is one person's short name and another's display name names both: anyone can
    pick a Matrix id like another neighbour's display name, so neither may win quietly."""
    key = comparison_key(typed).strip(_TRIM)
    if not key:
        return []
    bare = key.lstrip("@")
    keyed = {person: _person_keys(person, shown) for person, shown in names.items()}
    found = [p for p, keys in keyed.items() if any(k in (key, bare) for k in keys)]
    if found:
        return found
    if len(bare) < MIN_PREFIX:
        return []
    return [p for p, keys in keyed.items() if any(k.startswith(bare) for k in keys[1:])]
