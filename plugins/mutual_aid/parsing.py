"""Reading what residents type for mutual aid: a new offer or need, an id, some hours. Pure.

An offer or a need is a description, then any optional parts, split on new lines or on ``|``:

    !need help moving a sofa on saturday | this week | area: Elm Road
    !offer lifts to the hospital on weekdays | transport | ongoing
    !offer a pram to give away | one-off | expires in 7 days
    !need N-42 | help moving a sofa and a bed | today        (re-posting with the id edits it)

A part is an option only if it matches one of the patterns below as a whole, so a description
can still say "today" inside a sentence. Every error is a :class:`AidInputError` whose message
says what to type instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from civicbot_plugins.mutual_aid.categories import CATEGORIES, category_named, suggest_category

from civicbot.api import DateError, parse_duration

NEED, OFFER = "need", "offer"
TODAY, THIS_WEEK, ANYTIME = "today", "this week", "anytime"
URGENCY_ORDER = {TODAY: 0, THIS_WEEK: 1, ANYTIME: 2}
DEFAULT_EXPIRY = timedelta(days=14)
MAX_EXPIRY = timedelta(days=90)
MAX_DESCRIPTION = 500  # characters: a few sentences; longer belongs in the private chat
MAX_INPUT = 2000  # the whole command, options included
MAX_AREA = 80
MAX_MENTIONS = 2  # naming a neighbour or two is fine; more is a mass mention
MAX_HOURS = timedelta(hours=24)

_SPLIT = re.compile(r"\s*(?:\n|\s\|\s|\|)\s*")
_ID = re.compile(r"^#?(?P<kind>[nNoO])-?(?P<number>\d{1,9})$")
_URGENCY = {
    TODAY: re.compile(r"^(?:today|urgent(?:ly)?|asap|now|tonight)$", re.I),
    THIS_WEEK: re.compile(r"^(?:this\s+week|soon|in\s+the\s+next\s+few\s+days)$", re.I),
    ANYTIME: re.compile(r"^(?:any\s*time|whenever|no\s+rush|not\s+urgent)$", re.I),
}
_CATEGORY = re.compile(r"^(?:category|cat|type)\s*:?\s*(?P<name>[a-z ]+)$", re.I)
_AREA = re.compile(r"^(?:area|near|around|location|where)\s*:?\s*(?P<area>.+)$", re.I)
_EXPIRES = re.compile(
    r"^(?:expires?|expiring|ends?|open|lasts?|for)\s*:?\s*(?:in|for|after)?\s*(?P<when>.+)$",
    re.I,
)
_ONGOING = re.compile(r"^(?:ongoing|regular(?:ly)?|recurring|any\s+number\s+of\s+times)$", re.I)
_ONE_OFF = re.compile(r"^(?:one[\s-]?off|once|one\s+time|just\s+once|single)$", re.I)
_ROOM_PING = re.compile(r"(?<![\w])@(?:room|everyone|here|channel|all)\b", re.I)
_USER_ID = re.compile(r"@[a-z0-9._=\-/+]+:[a-z0-9.\-]+(?::\d+)?", re.I)
_HOURS_MINUTES = re.compile(r"^(?P<h>\d{1,2})\s*h(?:ours?|rs?)?\s*(?P<m>\d{1,2})\s*(?:m|mins?)?$")


class AidInputError(ValueError):
    """The input could not be read; the message says what is wrong and what to type."""


@dataclass(frozen=True)
class PostSpec:
    """A parsed ``!offer`` / ``!need``. ``category`` is the poster's if they named one, else the
    suggestion (``category_suggested`` says which); None when nothing fits."""

    kind: str
    description: str
    category: str | None
    category_suggested: bool
    urgency: str
    area: str
    expires_in: timedelta
    ongoing: bool
    edit_of: int | None = None  # the number of the post this re-post replaces


def parse_post_id(text: str) -> tuple[str, int]:
    """``"N-42"`` → ``("need", 42)``; ``"o7"`` → ``("offer", 7)``."""
    found = _ID.match(text.strip())
    if not found:
        raise AidInputError(
            f"“{_clip(text)}” is not a post id. Ids look like N-42 (a need) or O-7 (an offer)."
        )
    kind = NEED if found["kind"].lower() == "n" else OFFER
    return kind, int(found["number"])


def format_post_id(kind: str, number: int) -> str:
    """``("need", 42)`` → ``"N-42"``."""
    return f"{'N' if kind == NEED else 'O'}-{number}"


def check_content(text: str) -> None:
    """Refuse input that is too long or that would ping many people."""
    if len(text) > MAX_INPUT:
        raise AidInputError(
            f"That is too long for a post ({len(text):,} characters; the most is "
            f"{MAX_INPUT:,}, and {MAX_DESCRIPTION} for the description). Say it in a sentence "
            "or two; details can go in the private chat once someone helps."
        )
    if _ROOM_PING.search(text):
        raise AidInputError(
            "A post can't ping the whole room (@room). Take out the @room and send it again: "
            "people who offered something similar are told anyway."
        )
    if len(set(_USER_ID.findall(text))) > MAX_MENTIONS:
        raise AidInputError(
            f"A post can name at most {MAX_MENTIONS} people. Take out the extra names and send "
            "it again."
        )


def parse_post(kind: str, text: str) -> PostSpec:
    """Read the text after ``!offer`` or ``!need`` (``kind`` is :data:`OFFER` or :data:`NEED`)."""
    check_content(text)
    parts = [p for p in _SPLIT.split(text.replace("\u00a0", " ").strip()) if p]
    edit_of: int | None = None
    if parts:
        first, _, rest = parts[0].partition(" ")
        if _ID.match(first):
            id_kind, edit_of = parse_post_id(first)
            if id_kind != kind:
                raise AidInputError(
                    f"{first.upper()} is not {'a need' if kind == NEED else 'an offer'}. To "
                    f"change it, type `!{id_kind} {format_post_id(id_kind, edit_of)} | …`."
                )
            parts = ([rest.strip()] if rest.strip() else []) + parts[1:]
    if not parts:
        raise AidInputError(_usage(kind))
    description, options = parts[0], parts[1:]
    if len(description) > MAX_DESCRIPTION:
        raise AidInputError(
            f"The description is {len(description)} characters; keep it under "
            f"{MAX_DESCRIPTION}. Say it in a sentence or two."
        )
    category: str | None = None
    urgency = ANYTIME
    area = ""
    expires_in = DEFAULT_EXPIRY
    ongoing = kind == OFFER
    for option in options:
        if (found := _first_urgency(option)) is not None:
            urgency = found
        elif (named := category_named(option)) is not None:
            category = named
        elif m := _CATEGORY.match(option):
            named = category_named(m["name"])
            if named is None:
                raise AidInputError(
                    f"“{_clip(m['name'])}” is not a category. Choose one of: "
                    + ", ".join(CATEGORIES)
                    + "."
                )
            category = named
        elif m := _AREA.match(option):
            area = m["area"].strip()[:MAX_AREA]
        elif _ONGOING.match(option) or _ONE_OFF.match(option):
            if kind != OFFER:
                raise AidInputError("Only offers are one-off or ongoing; a need is met once.")
            ongoing = bool(_ONGOING.match(option))
        elif m := _EXPIRES.match(option):
            expires_in = _expiry(m["when"])
        else:
            raise AidInputError(
                f"I don't understand “{_clip(option)}”. After the description you can add: "
                "today / this week / anytime, a category, `area: Elm Road`, "
                "`expires in 7 days`" + (", one-off / ongoing." if kind == OFFER else ".")
            )
    suggested = category is None
    if suggested:
        category = suggest_category(description)
    return PostSpec(
        kind, description, category, suggested, urgency, area, expires_in, ongoing, edit_of
    )


def parse_hours(text: str) -> int:
    """``"2h"``, ``"90m"``, ``"1.5 hours"``, ``"1h30"`` → whole minutes (at least 1)."""
    cleaned = text.strip().lower()
    if m := _HOURS_MINUTES.match(cleaned):
        duration: timedelta | None = timedelta(hours=int(m["h"]), minutes=int(m["m"]))
    else:
        try:
            duration = parse_duration(cleaned)
        except DateError:
            duration = None
    if duration is None or duration <= timedelta(0):
        raise AidInputError(
            f"“{_clip(text)}” is not an amount of time. Type it like 2h, 90m or 1.5 hours."
        )
    if duration > MAX_HOURS:
        raise AidInputError("That is more than a day; record each day's hours separately.")
    return max(1, round(duration.total_seconds() / 60))


def parse_done(words: list[str], thanks: bool) -> tuple[bool, int]:
    """What follows ``!done N-42``: ``thanks`` (a thank-you in the room) or ``quietly`` (none;
    otherwise ``thanks`` as given), and an amount of time, like ``2h`` → (thanks, minutes)."""
    lowered = [w.lower() for w in words]
    thanks = True if "thanks" in lowered else thanks
    thanks = False if "quietly" in lowered else thanks
    times = [w for w in lowered if w not in ("thanks", "quietly")]
    return thanks, parse_hours(" ".join(times)) if times else 0


def format_minutes(minutes: int) -> str:
    """90 → ``"1h 30m"``; 120 → ``"2h"``; 45 → ``"45m"``."""
    hours, rest = divmod(abs(minutes), 60)
    sign = "-" if minutes < 0 else ""
    if hours and rest:
        return f"{sign}{hours}h {rest}m"
    return f"{sign}{hours}h" if hours else f"{sign}{rest}m"


def _first_urgency(option: str) -> str | None:
    for urgency, pattern in _URGENCY.items():
        if pattern.match(option):
            return urgency
    return None


def _expiry(when: str) -> timedelta:
    try:
        duration = parse_duration(when)
    except DateError:
        duration = None
    if duration is None or duration < timedelta(days=1) or duration > MAX_EXPIRY:
        raise AidInputError(
            f"“{_clip(when)}” is not a time I can use for expiry. Type something like "
            f"`expires in 7 days` or `expires in 3 weeks` (1 to {MAX_EXPIRY.days} days)."
        )
    return duration


def _usage(kind: str) -> str:
    if kind == NEED:
        return "Say what you need, like `!need help moving a sofa on saturday | this week`."
    return "Say what you can do or lend, like `!offer I have a ladder to lend | ongoing`."


def _clip(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
