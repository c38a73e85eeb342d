"""The bot's posts about an item, kept true: what was said about a need, a poll or a meeting
is edited in place (``m.replace``) when the item changes, so the room never shows a state that
is no longer so (issue 22 §3).

A plugin names the item a post is about when it sends it (``item=`` on ``ctx.reply``,
``ctx.send_message``, ``job.send``, ``self.ctx.send``; ``self.ctx.posts.remember`` for an event
sent another way), and the engine records the post's event in ``core_item_posts``. When the
item changes, one call edits every post recorded for it:

    await ctx.refresh(post.short_id, self.ctx.render("post", **values))

An edit goes out through :class:`~civicbot.core.outgoing.Outgoing` like every other message:
the same transaction ids on a replay, the room's pacing, the mention limits (an edit never pings
the room, whoever caused it: its ``m.new_content`` is limited too) and, in an encrypted room,
the same encrypted send.

What is recorded is the plugin, its item key, the room and the event: never who the item is
for or about, so a private need's post stays unlinked from its requester here as in the room.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from civicbot.core.effects import Edit, EffectRunner
from civicbot.core.events import notice_edit
from civicbot.core.outgoing import Outgoing
from civicbot.storage.database import Database
from civicbot.transport import TransportError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemPost:
    """One event the bot posted about an item."""

    room_id: str
    event_id: str


class ItemPosts:
    """The core's record of which events were posted about which item (``core_item_posts``)."""

    def __init__(self, db: Database, effects: EffectRunner | None = None):
        self._db = db
        self._effects = effects  # where an edit the homeserver could not take now is left

    async def remember(self, owner: str, item: str, room_id: str, event_id: str) -> None:
        """Record that ``event_id`` in ``room_id`` is a post about ``owner``'s ``item``
        (once: a replayed send that gave the same event records nothing new)."""
        if not event_id:
            return
        await self._db.execute(
            "INSERT OR IGNORE INTO core_item_posts (owner, item, room_id, event_id, posted_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (owner, item, room_id, event_id, int(time.time())),
        )

    async def of(self, owner: str, item: str) -> list[ItemPost]:
        """The posts about ``item``, oldest first."""
        rows = await self._db.fetchall(
            "SELECT room_id, event_id FROM core_item_posts WHERE owner = ? AND item = ? "
            "ORDER BY posted_at, rowid",
            (owner, item),
        )
        return [ItemPost(str(room), str(event)) for room, event in rows]

    async def forget(self, owner: str, item: str) -> None:
        """Stop following ``item``'s posts (it is gone for good): later refreshes edit none."""
        await self._db.execute(
            "DELETE FROM core_item_posts WHERE owner = ? AND item = ?", (owner, item)
        )

    async def refresh(
        self, owner: str, item: str, text: str, html: str | None, out: Outgoing
    ) -> int:
        """Edit every post about ``item`` to ``text`` (and ``html``); returns how many were
        edited now. A post that can't be edited (the bot left its room) is logged and
        skipped: the change of the item has happened and stands. One the homeserver could
        not take now (away, rate-limited) is left to the engine's outbox, which edits it once
        it can."""
        edited = 0
        for post in await self.of(owner, item):
            message = notice_edit(post.event_id, text, html)
            later = f"edit:{post.event_id}:"  # this post's edits left for later, if any
            try:
                # Nobody makes the bot ping the room by changing an item, whatever their power.
                await out.message(post.room_id, message, may_ping_room=False)
            except TransportError as exc:
                log.warning("could not edit a post of %s.%s: %s", owner, item, exc)
                if not exc.refused and self._effects is not None:
                    # Away or rate-limited: the engine makes this edit once it can, and an
                    # older one left for later never lands after it.
                    digest = hashlib.sha256(f"{text}\0{html}".encode()).hexdigest()[:16]
                    await self._effects.cancel_all(owner, later)
                    await self._effects.promise(
                        owner, later + digest, Edit(post.room_id, post.event_id, text, html)
                    )
                continue
            if self._effects is not None:
                await self._effects.cancel_all(owner, later)  # overtaken by this one
            edited += 1
        return edited


class PluginPosts:
    """One plugin's view of the recorded posts (``ctx.posts``): its item keys are its own."""

    def __init__(self, posts: ItemPosts, owner: str):
        self._posts = posts
        self._owner = owner

    async def remember(self, item: str, room_id: str, event_id: str) -> None:
        """Record a post about ``item`` sent without ``item=`` (a raw event, an older post)."""
        await self._posts.remember(self._owner, item, room_id, event_id)

    async def of(self, item: str) -> list[ItemPost]:
        """The posts recorded about ``item``, oldest first."""
        return await self._posts.of(self._owner, item)

    async def forget(self, item: str) -> None:
        """Stop following ``item``'s posts: later refreshes edit none of them."""
        await self._posts.forget(self._owner, item)

    async def refresh(self, item: str, text: str, html: str | None, out: Outgoing) -> int:
        """Edit every post about ``item``, sending with ``out`` (a handler's, a job's or
        :meth:`~civicbot.core.context.PluginContext.outgoing`); prefer ``ctx.refresh``."""
        return await self._posts.refresh(self._owner, item, text, html, out)
