"""SQL for offers, needs and matches (see :mod:`models`); callers get dataclasses back.

Private needs. A need sent by DM is stored so that nothing that lists, searches or digests posts
can tell who asked, and the database file alone (WAL included) can't either:

* ``mutual_aid_posts.poster`` is NULL for it. Every list, search, digest and match reads only
  that table (and the index), so none of them has the requester to show.
* Who asked is kept only in ``mutual_aid_requesters.sealed``: the Matrix id encrypted with
  AES-GCM under a key derived from ``data_dir/secret.key``, which is never in the database
  (:mod:`sealing`). Only :meth:`AidStore.requester_of` and :meth:`AidStore.is_owner` open it:
  the first for the bot to DM the requester (someone offers help; the introduction once they
  accept), the second to check that the one typing ``!accept``/``!done`` asked. Each value has
  its own random nonce, so one person's private needs can't be linked to each other or to their
  public posts by comparing ciphertexts.
* The ``!need`` event is kept only as a keyed hash (``source_key``), to recognise a replay: a DM
  event id would lead to the DM room, and so to the person, on the homeserver.
* The core's own replay guard (``core_handled``) does keep the DM's event id, with the time it
  was handled, for its dedup window. That id leads to the requester only through the
  homeserver (as the bot, or as its admin), which can read the DM itself anyway; keeping keyed
  hashes there instead would be a change to the core, not to this plugin.
* Timebank hours received on a private need are sealed the same way (``receiver_sealed``), so
  the ledger doesn't name the requester either.

So a moderator, a digest or someone with a copy of the database learns that "a neighbour" asked;
the helper the requester accepts learns who when the bot introduces them. Whoever holds both the
database and ``secret.key`` (the operator) could open the seals: the bot must be able to DM the
requester, so something must be able to.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from civicbot_plugins.mutual_aid.matching import index_terms
from civicbot_plugins.mutual_aid.models import (
    LIVE_MATCH_STATES,
    OFFERED,
    Match,
    Post,
    to_iso,
)
from civicbot_plugins.mutual_aid.parsing import NEED, URGENCY_ORDER, PostSpec
from civicbot_plugins.mutual_aid.sealing import Sealer
from civicbot_plugins.mutual_aid.search import SearchQueries
from civicbot_plugins.mutual_aid.service import Transition

from civicbot.api import Database, coarse_time


def requester_context(post_id: int) -> str:
    return f"requester:{post_id}"


class AidStore(SearchQueries):
    """Repository over the ``mutual_aid_`` posts, matches and search index."""

    def __init__(self, db: Database, sealer: Sealer, keyed_hash: Callable[[str], str]):
        """``keyed_hash`` (``ctx.keyed_hash``) hides the ``!offer``/``!need`` event ids."""
        self.db = db
        self.sealer = sealer
        self._keyed_hash = keyed_hash

    # -- posts ---------------------------------------------------------------------------------
    async def create(
        self,
        spec: PostSpec,
        *,
        room_id: str,
        source_event_id: str,
        author: str,
        private: bool,
        now: datetime,
        notify: bool = True,
        thanks: bool = False,
    ) -> tuple[Post, bool]:
        """Insert a post keyed by its ``!offer``/``!need`` event; a replayed event finds the
        first one (and False). A ``private`` need stores ``author`` only sealed."""
        if private and spec.kind != NEED:
            raise ValueError("only needs can be private")
        source_key = self._keyed_hash(f"mutual_aid:source:{source_event_id}")
        # A private need keeps the day it came, not its second: that second, matched against
        # any other trace of when someone wrote to the bot, would name them.
        at = coarse_time(now) if private else now
        expires = (at + timedelta(days=1) if private else now) + spec.expires_in
        async with self.db.transaction():
            existing = await self._one("source_key = ?", (source_key,))
            if existing is not None:
                return existing, False
            number = await self.db.fetchval(
                "INSERT INTO mutual_aid_sequences (kind, last) VALUES (?, 1)"
                " ON CONFLICT(kind) DO UPDATE SET last = last + 1 RETURNING last",
                (spec.kind,),
            )
            post_id = await self.db.execute(
                "INSERT INTO mutual_aid_posts (kind, number, room_id, source_key, poster,"
                " private, body, terms, category, urgency, urgency_rank, area, ongoing, notify,"
                " thanks, created_at, updated_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    spec.kind,
                    number,
                    room_id,
                    source_key,
                    None if private else author,
                    int(private),
                    spec.description,
                    index_terms(spec.description),
                    spec.category or "",
                    spec.urgency,
                    URGENCY_ORDER[spec.urgency],
                    spec.area,
                    int(spec.ongoing),
                    int(notify),
                    int(thanks),
                    to_iso(at),
                    to_iso(at),
                    to_iso(expires),
                ),
            )
            if private:
                await self.db.execute(
                    "INSERT INTO mutual_aid_requesters (post_id, sealed) VALUES (?, ?)",
                    (post_id, self.sealer.seal(author, requester_context(post_id))),
                )
            post = await self._one("id = ?", (post_id,))
        assert post is not None
        return post, True

    async def edit(self, post: Post, spec: PostSpec, now: datetime) -> Post:
        """Re-posting with the id: new text and options, same id, same state. The expiry becomes
        the later of the current one and ``spec.expires_in`` from now (14 days unless the re-post
        named one), and the reminder is re-armed. Check ownership before calling."""
        at = coarse_time(now) if post.private else now
        expires = (at + timedelta(days=1) if post.private else now) + spec.expires_in
        await self.db.execute(
            "UPDATE mutual_aid_posts SET body = ?, terms = ?, category = ?, urgency = ?,"
            " urgency_rank = ?, area = ?, ongoing = ?, updated_at = ?, expires_at = ?,"
            " reminded = 0 WHERE id = ?",
            (
                spec.description,
                index_terms(spec.description),
                spec.category or "",
                spec.urgency,
                URGENCY_ORDER[spec.urgency],
                spec.area,
                int(spec.ongoing),
                to_iso(at),
                to_iso(max(post.expires_at, expires)),
                post.id,
            ),
        )
        return await self._require(post.id)

    async def _one(self, where: str, params: tuple[Any, ...]) -> Post | None:
        row = await self.db.fetchone(f"SELECT * FROM mutual_aid_posts WHERE {where}", params)
        return Post.from_row(row) if row is not None else None

    async def _many(self, where: str, params: tuple[Any, ...] = ()) -> list[Post]:
        rows = await self.db.fetchall(f"SELECT * FROM mutual_aid_posts WHERE {where}", params)
        return [Post.from_row(row) for row in rows]

    async def _require(self, post_id: int) -> Post:
        post = await self._one("id = ?", (post_id,))
        assert post is not None
        return post

    async def get(self, kind: str, number: int) -> Post | None:
        """The post called ``N-<number>`` (kind "need") or ``O-<number>``."""
        return await self._one("kind = ? AND number = ?", (kind, number))

    async def by_id(self, post_id: int) -> Post | None:
        return await self._one("id = ?", (post_id,))

    async def set_event(self, post_id: int, event_id: str) -> None:
        """Remember the room message that announced the post (for ✋ reactions)."""
        await self.db.execute(
            "UPDATE mutual_aid_posts SET event_id = ? WHERE id = ?", (event_id, post_id)
        )

    async def by_event(self, event_id: str) -> Post | None:
        return await self._one("event_id = ?", (event_id,))

    async def is_owner(self, post: Post, user_id: str) -> bool:
        """Did ``user_id`` post this? For a private need, opens the seal to compare."""
        if not post.private:
            return post.poster == user_id
        return await self.requester_of(post) == user_id

    async def requester_of(self, post: Post) -> str | None:
        """Who posted it, for the bot's own use (a DM, an introduction): for a private need this
        is the only way to learn it. Never put the result in a room, a list or a log."""
        if not post.private:
            return post.poster
        sealed = await self.db.fetchval(
            "SELECT sealed FROM mutual_aid_requesters WHERE post_id = ?", (post.id,)
        )
        return self.sealer.open(sealed, requester_context(post.id)) if sealed else None

    # -- lifecycle -----------------------------------------------------------------------------
    def replayed(self, post: Post, event_id: str) -> bool:
        """Whether ``post``'s latest change was made by the command ``event_id``: the same
        command handled again after the bot stopped before it had finished."""
        return bool(event_id) and post.changed_by == self._keyed_hash(event_id)

    async def apply(
        self,
        post: Post,
        change: Transition,
        *,
        now: datetime,
        match: Match | None = None,
        expires_at: datetime | None = None,
        source_event: str | None = None,
    ) -> bool:
        """Write a transition from :mod:`service`, if the post is still in the state it was read
        in (a replayed or concurrent command changes nothing and gets False). ``source_event``
        is the command that asked for it (see :meth:`replayed`)."""
        async with self.db.transaction():
            changed = await self.db.execute_rowcount(
                "UPDATE mutual_aid_posts SET state = ?, updated_at = ?,"
                " expires_at = COALESCE(?, expires_at),"
                " reminded = CASE WHEN ? IS NULL THEN reminded ELSE 0 END,"
                " times_matched = times_matched + ?, changed_by = ? WHERE id = ? AND state = ?",
                (
                    change.post_state,
                    to_iso(now),
                    to_iso(expires_at) if expires_at else None,
                    to_iso(expires_at) if expires_at else None,
                    int(change.match_state == "accepted"),
                    self._keyed_hash(source_event) if source_event else None,
                    post.id,
                    post.state,
                ),
            )
            if not changed:
                return False
            if match is not None and change.match_state is not None:
                await self.db.execute(
                    "UPDATE mutual_aid_matches SET state = ?, updated_at = ? WHERE id = ?",
                    (change.match_state, to_iso(now), match.id),
                )
            if change.others_state is not None:
                await self.db.execute(
                    "UPDATE mutual_aid_matches SET state = ?, updated_at = ?"
                    " WHERE post_id = ? AND id != ? AND state IN (?, ?)",
                    (
                        change.others_state,
                        to_iso(now),
                        post.id,
                        match.id if match else 0,
                        *LIVE_MATCH_STATES,
                    ),
                )
        return True

    async def add_match(self, post: Post, helper: str, now: datetime) -> tuple[Match, bool]:
        """``!can``: a pending offer of help. A second ``!can`` by the same helper (or a replay)
        finds the live one (and False)."""
        async with self.db.transaction():
            existing = await self.live_match(post.id, helper)
            if existing is not None:
                return existing, False
            match_id = await self.db.execute(
                "INSERT INTO mutual_aid_matches (post_id, helper, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (post.id, helper, OFFERED, to_iso(now), to_iso(now)),
            )
        match = await self.match(match_id)
        assert match is not None
        return match, True

    async def match(self, match_id: int) -> Match | None:
        row = await self.db.fetchone("SELECT * FROM mutual_aid_matches WHERE id = ?", (match_id,))
        return Match.from_row(row) if row is not None else None

    async def live_match(self, post_id: int, helper: str) -> Match | None:
        """``helper``'s pending or accepted match on the post."""
        row = await self.db.fetchone(
            "SELECT * FROM mutual_aid_matches WHERE post_id = ? AND helper = ?"
            " AND state IN (?, ?) ORDER BY id DESC LIMIT 1",
            (post_id, helper, *LIVE_MATCH_STATES),
        )
        return Match.from_row(row) if row is not None else None

    async def matches_of(self, post_id: int, states: tuple[str, ...] = ()) -> list[Match]:
        """The post's matches (in ``states``, if given), oldest first."""
        where = "post_id = ?" + (f" AND state IN ({', '.join('?' * len(states))})" * bool(states))
        rows = await self.db.fetchall(
            f"SELECT * FROM mutual_aid_matches WHERE {where} ORDER BY id", (post_id, *states)
        )
        return [Match.from_row(row) for row in rows]

    async def set_intro_room(self, match_id: int, room_id: str) -> None:
        await self.db.execute(
            "UPDATE mutual_aid_matches SET intro_room_id = ? WHERE id = ?", (room_id, match_id)
        )

    async def intro_rooms(self) -> set[str]:
        """Every introduction room the plugin made (never a place for a need)."""
        rows = await self.db.fetchall(
            "SELECT intro_room_id FROM mutual_aid_matches WHERE intro_room_id IS NOT NULL"
        )
        return {row[0] for row in rows}

    async def remove_unposted(self, post_id: int) -> None:
        """Undo a post that could not be posted in its room (nothing half-done is kept)."""
        async with self.db.transaction():
            await self.db.execute("DELETE FROM mutual_aid_requesters WHERE post_id = ?", (post_id,))
            await self.db.execute(
                "DELETE FROM mutual_aid_posts WHERE id = ? AND event_id IS NULL", (post_id,)
            )

    # -- lists and search ----------------------------------------------------------------------
    async def open_posts(
        self, room_id: str, kind: str, now: datetime, limit: int = 20, offset: int = 0
    ) -> list[Post]:
        """``!needs`` / ``!offers``: open, unexpired posts here, most urgent first, then newest."""
        # ``+expires_at``: walk the list index in its order and skip the few expired rows,
        # rather than let the planner fetch every unexpired post by expiry and sort them.
        return await self._many(
            "room_id = ? AND kind = ? AND state = 'open' AND +expires_at > ?"
            " ORDER BY urgency_rank, id DESC LIMIT ? OFFSET ?",
            (room_id, kind, to_iso(now), limit, offset),
        )

    async def mine(self, user_id: str) -> list[Post]:
        """``!mine``: posts ``user_id`` made that are not closed, in every room, newest first;
        private needs included (their seals are opened to find them)."""
        public = await self._many(
            "poster = ? AND state IN ('open', 'matched', 'expired') ORDER BY id DESC", (user_id,)
        )
        rows = await self.db.fetchall(
            "SELECT p.*, r.sealed FROM mutual_aid_posts p JOIN mutual_aid_requesters r"
            " ON r.post_id = p.id WHERE p.private = 1 AND p.state IN ('open', 'matched',"
            " 'expired')"
        )
        private = [
            Post.from_row(row)
            for row in rows
            if self.sealer.open(row["sealed"], requester_context(row["id"])) == user_id
        ]
        return sorted(public + private, key=lambda p: -p.id)

    async def helping(self, user_id: str) -> list[tuple[Post, Match]]:
        """``!mine``: the needs ``user_id`` offered to help with or is helping with."""
        rows = await self.db.fetchall(
            "SELECT p.*, m.id AS match_id FROM mutual_aid_matches m JOIN mutual_aid_posts p"
            " ON p.id = m.post_id WHERE m.helper = ? AND m.state IN (?, ?) ORDER BY m.id DESC",
            (user_id, *LIVE_MATCH_STATES),
        )
        out = []
        for row in rows:
            match = await self.match(row["match_id"])
            assert match is not None
            out.append((Post.from_row(row), match))
        return out
