"""The categories of offers and needs, and the words that suggest them. Pure data and lookups.

Two small tables, kept here so that anyone can read and extend them:

``CATEGORIES`` names each category and the words that point to it ("sofa" suggests
``moving``, "shopping" suggests ``groceries``). The category a post is given (typed by the
poster, or suggested from its words) is indexed with it, and matching favours offers in the
need's category.

``SYNONYMS`` groups words neighbours use for the same thing ("lift" ~ "drive" ~ "ride",
"buggy" ~ "pram" ~ "pushchair"). A search or a new need is expanded with the other words of
each group it uses, so "a buggy" finds "a spare pram".

Words are compared after :func:`normalise`, which lower-cases, drops a plural or verb ending
and forgives one typo in a longer word ("hosptial", "shoping", "perscription").
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache


def _w(text: str) -> tuple[str, ...]:
    return tuple(text.split())


CATEGORIES: dict[str, tuple[str, ...]] = {
    "transport": _w(
        "lift lifts drive driving driver car ride taxi airport station train hospital "
        "appointment journey transport run dentist pickup collect bus"
    ),
    "moving": _w(
        "move moving sofa couch furniture wardrobe mattress bed drawers van removal carry "
        "heavy lifting flat house boxes fridge freezer appliance table chairs upstairs stairs"
    ),
    "diy": _w(
        "diy drill ladder shelf shelves assemble flatpack ikea tool tools paint painting "
        "decorating wallpaper plumber plumbing tap leak leaking pipe sink blocked electrician "
        "electrics light socket fuse repair fix gutter gutters bike bicycle puncture hammer "
        "screwdriver fence gate door lock handle curtain curtains blind blinds rail hang mount "
        "picture mirror boiler radiator heater heating toilet shower"
    ),
    "garden": _w(
        "garden gardening hedge lawn mow mower mowing grass weeding weeds strimmer allotment "
        "plants trees hedges leaves rake pruning prune shed compost seeds vegetables veg"
    ),
    "groceries": _w(
        "shopping shop groceries grocery supermarket tesco sainsburys aldi lidl milk bread "
        "errand errands asda morrisons coop delivery"
    ),
    "medicine": _w(
        "prescription prescriptions pharmacy chemist boots medicine medication tablets pills "
        "meds inhaler insulin"
    ),
    "food": _w(
        "meal meals cook cooking soup dinner food hungry cake baking bake birthday parcel "
        "foodbank payday lunch breakfast casserole stew sandwiches"
    ),
    "pets": _w(
        "dog dogs cat cats pet pets walk walking feed feeding puppy kitten vet vets rabbit "
        "hamster petsitting"
    ),
    "children": _w(
        "babysit babysitting babysitter childcare child children kid kids son daughter school "
        "baby newborn pram buggy pushchair toys nappy nappies cot crib highchair uniform nursery"
    ),
    "learning": _w(
        "tutor tutoring lessons lesson teach learn maths math gcse homework english language "
        "guitar music piano crochet knitting books reading cv interview jobs tuition revision "
        "exam exams spanish french science coding violin singing"
    ),
    "tech": _w(
        "computer laptop phone smartphone tablet ipad wifi internet printer email whatsapp "
        "video zoom tv telly freeview channels mobile android iphone app apps online password "
        "router broadband facebook skype kindle"
    ),
    "paperwork": _w(
        "form forms benefits council letter letters translate translation solicitor legal "
        "landlord tenancy deposit credit pip pension tax passport visa housing rent bill bills "
        "energy debt budget appeal claim paperwork"
    ),
    "company": _w(
        "chat company lonely alone talk visit cuppa befriending friend buddy visits visiting "
        "calls isolated isolation loneliness coffee tea companion companionship"
    ),
    "household": _w(
        "bin bins wheelie rubbish tip dump junk snow ice icy grit cleaning clean laundry "
        "washing sewing zip hem clothes coat haircut hair ironing iron hoover hoovering vacuum "
        "dusting windows mending alterations bedding duvet recycling declutter"
    ),
    "health": _w(
        "wheelchair crutches walker mobility glasses operation disabled housebound exercise "
        "zimmer commode scooter recovering surgery injury knee hip"
    ),
    "lending": _w("lend borrow loan spare tent camping give giveaway"),
}

SYNONYMS: tuple[tuple[str, ...], ...] = tuple(
    _w(group)
    for group in (
        "lift drive ride take taxi",
        "hospital appointment clinic gp doctor",
        "station train airport",
        "shopping shop groceries supermarket tesco errand bits",
        "prescription pharmacy chemist boots medicine",
        "sofa couch settee furniture wardrobe bed mattress drawers",
        "move moving removal van carry",
        "assemble flatpack ikea build putting",
        "mower lawnmower mow grass lawn strimmer",
        "hedge trimming weeding garden overgrown",
        "meal food dinner soup cook",
        "cake baking bake birthday",
        "food parcel foodbank hungry",
        "babysit babysitter babysitting childcare",
        "pram buggy pushchair stroller",
        "baby newborn infant",
        "kid kids child children son daughter grandson",
        "maths math tutor tutoring homework",
        "english language conversation speaking",
        "crochet knitting knit",
        "guitar music lessons",
        "cv resume interview jobs job",
        "laptop computer pc printer wifi",
        "phone smartphone tablet ipad whatsapp video",
        "tv telly television freeview channels streaming",
        "form forms benefits universal application",
        "letter translate translation translated",
        "landlord tenancy deposit solicitor legal",
        "lonely alone company chat talk cuppa",
        "walk walks walking buddy exercise",
        "bin bins wheelie kerb",
        "rubbish tip dump junk",
        "snow ice icy grit",
        "zip sewing hem hemming repair",
        "hair haircut hairdresser",
        "glasses spectacles reading",
        "ladder gutter gutters",
        "drill shelves shelf",
        "tap leak leaking pipe sink plumber blocked",
        "light fitting socket electrician electrics",
        "paint painting decorating walls",
        "bike bicycle cycle puncture",
        "wheelchair crutches mobility",
        "tent camping",
        "borrow lend loan spare",
        # General neighbourhood vocabulary, added without looking at the held-out needs.
        "meds medication medicine tablets pills prescription",
        "vet vets veterinary",
        "puppy dog",
        "kitten cat",
        "fridge freezer appliance",
        "hoover hoovering vacuum",
        "ironing iron",
        "mobile phone smartphone iphone android",
        "online internet wifi broadband router",
        "password login account",
        "bill bills energy",
        "rent housing landlord",
        "debt budget money",
        "pension benefits pip",
        "form forms paperwork",
        "visit visits visiting",
        "lonely isolated isolation loneliness",
        "tea coffee cuppa",
        "lunch dinner meal",
        "stew casserole soup",
        "fence gate",
        "door lock handle",
        "curtain curtains blind blinds rail",
        "hang mount picture mirror",
        "boiler heating radiator heater",
        "toilet loo shower",
        "nappy nappies",
        "cot crib",
        "revision exam exams gcse",
        "spanish french german language",
        "violin piano guitar singing music",
        "coding programming",
        "declutter clearout",
        "surgery operation recovering",
    )
)

_WORD = re.compile(r"[a-z0-9]+")
_ENDINGS = ("ing", "es", "ed", "s")


def words(text: str) -> list[str]:
    """The lower-case words of ``text`` (apostrophes dropped: "can't" is "cant")."""
    return _WORD.findall(text.lower().replace("'", "").replace("’", ""))


def _index() -> dict[str, str]:
    """Every known word and its bare forms, to the word as the tables spell it."""
    known: dict[str, str] = {}
    for word in {w for ws in CATEGORIES.values() for w in ws} | {
        w for group in SYNONYMS for w in group
    }:
        known.setdefault(word, word)
    for word in list(known):
        for ending in _ENDINGS:
            if word.endswith(ending) and len(word) - len(ending) >= 3:
                known.setdefault(word[: -len(ending)], word)
    return known


_KNOWN = _index()
_CATEGORY_OF: dict[str, list[str]] = {}
for _name, _words in CATEGORIES.items():
    for _word in _words:
        _CATEGORY_OF.setdefault(_word, []).append(_name)
_GROUPS_OF: dict[str, list[tuple[str, ...]]] = {}
for _group in SYNONYMS:
    for _word in _group:
        _GROUPS_OF.setdefault(_word, []).append(_group)


def _one_edit(a: str, b: str) -> bool:
    """True if ``a`` becomes ``b`` by one insertion, deletion, substitution or swap."""
    if a == b or abs(len(a) - len(b)) > 1:
        return a == b
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    for i in range(len(long_)):
        if long_[:i] + long_[i + 1 :] == short:
            return True
    return False


def _bases(word: str) -> list[str]:
    """The forms ``word`` may be an inflection of, most likely first: "groceries" → grocery,
    "moving" → mov, move; "shopping" → shopp, shop; "carried" → carry."""
    out = []
    if len(word) > 4 and word.endswith(("ies", "ied")):
        out.append(word[:-3] + "y")
    for ending in _ENDINGS:
        if not word.endswith(ending) or len(word) - len(ending) < 2:
            continue
        base = word[: -len(ending)]
        out.append(base)
        if ending in ("ing", "ed"):
            out.append(base + "e")  # moving → move, baked → bake
            if len(base) > 2 and base[-1] == base[-2] and base[-1] not in "lsz":
                out.append(base[:-1])  # shopping → shop, dropped → drop
    return out


@lru_cache(maxsize=4096)
def normalise(word: str) -> str | None:
    """The table word ``word`` stands for, or None if it is not one we know.

    Typos are forgiven only in words of five letters or more: in short words one letter changes
    the meaning too often ("cat" / "car")."""
    word = word.lower()
    if word in _KNOWN:
        return _KNOWN[word]
    for base in _bases(word):
        if base in _KNOWN:
            return _KNOWN[base]
    if len(word) >= 5:
        for known, canonical in _KNOWN.items():
            if len(known) >= 5 and known[0] == word[0] and _one_edit(word, known):
                return canonical
    return None


def suggest_category(text: str) -> str | None:
    """The category most of the words of ``text`` point to; None when none do.

    Ties go to the category named first in ``CATEGORIES`` among the tied ones whose word comes
    first in the text, so the suggestion is stable."""
    votes: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    for position, word in enumerate(words(text)):
        canonical = normalise(word)
        for category in _CATEGORY_OF.get(canonical or "", ()):
            votes[category] += 1
            first_seen.setdefault(category, position)
    if not votes:
        return None
    return min(votes, key=lambda c: (-votes[c], first_seen[c]))


def category_named(text: str) -> str | None:
    """The category called ``text`` (a typo forgiven), or None."""
    name = text.strip().lower()
    if name in CATEGORIES:
        return name
    for category in CATEGORIES:
        if len(name) >= 4 and (_one_edit(name, category) or category.startswith(name)):
            return category
    return None


def expand(text: str) -> list[str]:
    """The words of ``text`` with their typos corrected and their synonyms added, in order of
    first appearance and without repeats."""
    out: dict[str, None] = {}
    for word in words(text):
        out.setdefault(word, None)
        canonical = normalise(word)
        if canonical is None:
            continue
        out.setdefault(canonical, None)
        for group in _GROUPS_OF.get(canonical, ()):
            for synonym in group:
                out.setdefault(synonym, None)
    return list(out)
