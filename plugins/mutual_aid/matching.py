"""How offers and needs are matched and searched: FTS5 queries and the ranking. Pure.

Why SQLite FTS5 and not a search engine or embeddings: it is already in every Python's SQLite,
it keeps the index in the bot's one database file (so "forget me" and backups cover it), it
stems English words (porter: "moving" finds "move") and ranks by BM25, and it answers in a few
milliseconds over 100,000 posts on one core (see ``bench/bench_mutual_aid.py``). What it lacks
for neighbours' messages (synonyms, typos) is made up by the small tables in :mod:`categories`:

* a post is indexed with its words (``body``), the synonyms of its words (``terms``, see
  :func:`index_terms`) and its category;
* a new need (or offer, or ``!find``) becomes an OR query of its meaningful words, each typo
  corrected where the tables know the word (:func:`query_words`), leaving out words so common
  that they pick out little (:func:`drop_common`);
* BM25 (``body`` counting more than ``terms``) ranks the candidates, and a candidate in the
  same category as the new post gets a bonus (:func:`rank`), which is what lifts the right offer
  when a need shares few words with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from civicbot_plugins.mutual_aid.categories import expand, normalise, words

# bm25() column weights for (body, terms, category): own words count most.
BM25_WEIGHTS = (1.0, 0.5, 0.0)
CATEGORY_BONUS = 0.35  # added to a relevance in 0..1, for the same category
FTS_CANDIDATES = 40  # how many BM25 hits are re-ranked
# The index holds every room's posts: when too few of the best hits are in the room searched,
# the search looks this many times deeper, up to MAX_DEPTH hits.
DEEPER = 10
MAX_DEPTH = 4000
MAX_QUERY_WORDS = 12
# The most posts a query's words may be in together before the commonest are left out (see
# drop_common). Far above what a neighbourhood room holds: it matters at benchmark scale.
WORD_BUDGET = 3000

# Words that say nothing about *what* is offered or needed. Kept short: a word missing here only
# costs a little speed, while a word wrongly here can never match.
STOPWORDS = frozenset(
    """
    a about after again all also am an and any anyone anybody anything are as at be been before
    being but by can cant could did do does doing dont for from get gets getting got had has
    have having he her here hi hello him his how i id if im in into is it its ive just know let
    lets like looking me mine more my need needed needing needs no not now of off on one or
    our out over please pls really round she should so some somebody someone something still
    than thank thanks that the their them then there these they thing things this those thx
    to too up us very want wanted wants was we week were what when where which who will with
    would yes you your youre help helping helped able happy offer offering offers
    """.split()
)


@dataclass(frozen=True)
class Hit:
    """A candidate from the index: its post id, category and BM25 (lower is better, as
    SQLite's ``bm25()`` returns it)."""

    post_id: int
    category: str
    bm25: float


def query_words(text: str) -> list[str]:
    """The words of ``text`` worth searching for: stopwords dropped, typos corrected to a word
    the tables know (the typed word kept too, since it may be right), no repeats."""
    out: dict[str, None] = {}
    for word in words(text):
        if word in STOPWORDS or len(word) < 2:
            continue
        out.setdefault(word, None)
        canonical = normalise(word)
        if canonical is not None and canonical not in STOPWORDS:
            out.setdefault(canonical, None)
    return list(out)


def index_terms(text: str) -> str:
    """What is indexed in the ``terms`` column beside a post's own words: the synonyms of its
    words (the words themselves are in ``body`` already)."""
    own = set(words(text))
    return " ".join(w for w in expand(text) if w not in own and w not in STOPWORDS)


def fts_expression(chosen: Sequence[str]) -> str:
    """An FTS5 MATCH expression finding posts that have any of ``chosen`` among their own words
    or synonyms."""
    # Quoted, so no word is read as FTS5 syntax (AND, NEAR, a column name, a star).
    return "{body terms} : (" + " OR ".join(f'"{w}"' for w in chosen) + ")"


def word_expression(word: str) -> str:
    """The MATCH expression for one word, to count the posts that have it."""
    return fts_expression([word])


def drop_common(frequencies: Sequence[tuple[str, int]], budget: int = WORD_BUDGET) -> list[str]:
    """The words to search by, from ``(word, open posts that have it)`` pairs: the rarest first,
    as long as together they are in at most ``budget`` posts, and always the rarest one that
    is in any post at all. A word
    in thousands of posts ("borrow", "weekend") picks out little, and scoring every post that
    has it is what would make a search slow; the rarer words of the same need carry the
    meaning. Returned in the order given."""
    kept: set[str] = set()
    total = 0
    for word, count in sorted(frequencies, key=lambda pair: pair[1]):
        if count == 0:
            continue  # in no post: it can't find anything, and must not use up the rule below
        if kept and total + count > budget:
            break
        kept.add(word)
        total += count
    return [word for word, _ in frequencies if word in kept]


def rank(
    hits: Iterable[Hit], category: str | None, limit: int, exclude: Sequence[int] = ()
) -> list[tuple[int, float]]:
    """Order candidates: relevance (the best BM25 scaled to 1) plus :data:`CATEGORY_BONUS` for
    the same category. Returns ``(post_id, score)`` pairs, best first, ties to the newer post."""
    pool = [h for h in hits if h.post_id not in exclude]
    if not pool:
        return []
    best = min(h.bm25 for h in pool)  # most negative
    scored = []
    for hit in pool:
        relevance = hit.bm25 / best if best < 0 else 0.0
        bonus = CATEGORY_BONUS if category and hit.category == category else 0.0
        scored.append((hit.post_id, round(relevance + bonus, 6)))
    scored.sort(key=lambda pair: (-pair[1], -pair[0]))
    return scored[:limit]
