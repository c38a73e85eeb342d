"""SQL for searching and matching posts, part of :class:`~store.AidStore` (see :mod:`matching`
for how words are chosen and hits ranked, and :mod:`models` for the two indexes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from civicbot_plugins.mutual_aid.matching import (
    BM25_WEIGHTS,
    DEEPER,
    FTS_CANDIDATES,
    MAX_DEPTH,
    MAX_QUERY_WORDS,
    WORD_BUDGET,
    Hit,
    drop_common,
    fts_expression,
    query_words,
    rank,
    word_expression,
)
from civicbot_plugins.mutual_aid.models import Candidate, Post, to_iso
from civicbot_plugins.mutual_aid.parsing import NEED, OFFER

from civicbot.api import Database

_W = ", ".join(str(w) for w in BM25_WEIGHTS)


class SearchQueries:
    """``!find`` and matching; mixed into the store, whose ``db`` and ``_many`` it uses."""

    db: Database

    async def _many(self, where: str, params: tuple[Any, ...] = ()) -> list[Post]:
        raise NotImplementedError

    async def search(
        self,
        room_id: str,
        text: str,
        now: datetime,
        *,
        kind: str | None = None,
        category: str | None = None,
        limit: int = 10,
        exclude: tuple[int, ...] = (),
    ) -> list[Candidate]:
        """Open posts here that fit ``text`` best (only ``kind``, if given), favouring
        ``category``. ``!find`` and matching both use it."""
        kinds = (kind,) if kind else (NEED, OFFER)
        posts: dict[int, Post] = {}
        for each in kinds:
            posts.update(await self._hits(each, room_id, text, now))
        hits = (Hit(p.id, p.category, score) for p, score in posts.values())
        ranked = rank(hits, category, limit, exclude)
        return [Candidate(posts[i][0], score) for i, score in ranked]

    async def _hits(
        self, kind: str, room_id: str, text: str, now: datetime
    ) -> dict[int, tuple[Post, float]]:
        """The best BM25 hits in one kind's index that are in ``room_id`` and unexpired.

        The index is ranked alone and only the best hits are read from the posts table
        (scoring every hit through a join is what made matching slow); when other rooms' posts
        take most of those places, it looks deeper. Returns each post with its BM25."""
        table = f"mutual_aid_fts_{kind}"
        chosen = await self._search_words(table, text)
        if not chosen:
            return {}
        expression, cutoff = fts_expression(chosen), to_iso(now)
        depth = FTS_CANDIDATES
        while True:
            rows = await self.db.fetchall(
                "SELECT p.*, h.score FROM"
                f" (SELECT rowid AS id, bm25({table}, {_W}) AS score FROM {table}"
                f" WHERE {table} MATCH ? ORDER BY score LIMIT ?) h"
                " JOIN mutual_aid_posts p ON p.id = h.id ORDER BY h.score",
                (expression, depth),
            )
            hits = [
                (Post.from_row(r), r["score"])
                for r in rows
                if r["room_id"] == room_id and r["expires_at"] > cutoff
            ][:FTS_CANDIDATES]
            if len(hits) >= FTS_CANDIDATES // 4 or len(rows) < depth or depth >= MAX_DEPTH:
                return {post.id: (post, score) for post, score in hits}
            depth = min(depth * DEEPER, MAX_DEPTH)

    async def _search_words(self, table: str, text: str) -> list[str]:
        """The words of ``text`` to search by, after counting (up to a limit) the open posts
        of one kind that have each, so that the very common ones can be left out."""
        chosen = query_words(text)[:MAX_QUERY_WORDS]
        if not chosen:
            return []
        # One statement for all the words: each query is a hop to the database thread, and
        # on a busy machine every hop may wait for the CPU.
        one = f"SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ? LIMIT ?)"
        row = await self.db.fetchone(
            "SELECT " + ", ".join(f"({one})" for _ in chosen),
            tuple(v for word in chosen for v in (word_expression(word), WORD_BUDGET + 1)),
        )
        assert row is not None
        frequencies = [(word, int(row[i])) for i, word in enumerate(chosen)]
        return drop_common(frequencies)

    async def matches_for(
        self, post: Post, now: datetime, limit: int = 3, author: str | None = None
    ) -> list[Candidate]:
        """For a new need, the open offers that fit it best; for a new offer, the open needs.
        The poster's own posts are left out: ``author`` is who posted (needed for a private
        need, whose ``poster`` is not stored; the caller has it from the command)."""
        wanted = OFFER if post.kind == NEED else NEED
        found = await self.search(
            post.room_id,
            post.body,
            now,
            kind=wanted,
            category=post.category or None,
            limit=limit + 5,
            exclude=(post.id,),
        )
        author = author or post.poster
        if len(found) < limit + 5 and post.category:
            # Few posts share a word with it: the newest open ones in its category may still
            # fit ("my boiler is off" / "I'm a retired plumber"), below every word match.
            seen = {c.post.id for c in found} | {post.id}
            for other in await self._many(
                "room_id = ? AND kind = ? AND state = 'open' AND category = ?"
                " AND +expires_at > ? ORDER BY urgency_rank, id DESC LIMIT ?",
                (post.room_id, wanted, post.category, to_iso(now), limit + 5),
            ):
                if other.id not in seen:
                    found.append(Candidate(other, 0.0))
        if author is not None:
            found = [c for c in found if c.post.poster != author]
        return found[:limit]
