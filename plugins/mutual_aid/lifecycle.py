"""Timers and hooks: expiry and the reminder before it, the digests, forgetting a person.

The expiry job runs every :data:`SWEEP` (and once at start, for what came due while the bot
was down), and goes on page by page until nothing due is left: thousands that fell due while
the bot was away are cleared in one run, as fast as the send pacer lets their DMs out. A post's
change (expired, reminded) and the DM that tells its poster are one promised effect
(``ctx.effects``): written in one transaction, the DM then kept by the engine until it is sent,
exactly once, whatever instant the bot dies or however long the homeserver is away.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from civicbot_plugins.mutual_aid import service, views
from civicbot_plugins.mutual_aid.ledger import AidLedger
from civicbot_plugins.mutual_aid.lifecycle_store import AidJobs
from civicbot_plugins.mutual_aid.models import Post, to_iso
from civicbot_plugins.mutual_aid.parsing import NEED, OFFER
from civicbot_plugins.mutual_aid.store import AidStore

from civicbot.api import (
    DigestSection,
    DirectMessage,
    ForgetReport,
    JobContext,
    PluginContext,
    PublicPost,
    PublicSection,
    private,
)

SWEEP = timedelta(minutes=15)
PAGE = 500  # posts read at a time by the expiry job


# A digest lists this many new offers and thanks, then says how many more (the waiting needs
# come at most 20, the oldest first): a busy week stays one readable message.
DIGEST_LIMIT = 12


class AidUpkeep:
    """The expiry job and the hooks other parts of civicbot call."""

    def __init__(self, plugin: PluginContext[Any], store: AidStore, ledger: AidLedger):
        self.plugin = plugin
        self.store = store
        self.ledger = ledger
        self.jobs = AidJobs(store)

    def start(self) -> None:
        self.plugin.jobs.at("expiry-start", self.plugin.clock.now(), self.sweep)
        self.plugin.jobs.every("expiry", SWEEP, self.sweep)

    async def set_thanks(self, post_id: int) -> None:
        await self.jobs.set_thanks(post_id)

    async def sweep(self, job: JobContext[Any]) -> None:
        """Expire what is past its expiry, remind what expires soon; the poster is told by DM."""
        now = job.now
        db, effects = self.plugin.db, self.plugin.effects
        after = ("", 0)
        while page := await self.jobs.past_expiry(now, PAGE, after):
            for post in page:
                await self._expire(job, post, now)
            after = (to_iso(page[-1].expires_at), page[-1].id)
        for post in await self.jobs.expiring_between(now, now + service.REMIND_BEFORE):
            key = f"reminder:{post.id}:{post.expires_at.isoformat()}"
            async with db.transaction():
                if not await self.jobs.mark_reminded(post.id):
                    continue
                poster = await self.store.requester_of(post)
                if poster is not None:
                    text = (
                        f"Your post {post.short_id} (“{post.body}”) expires on "
                        f"{post.expires_at:%a %-d %b}. To keep it up, type "
                        f"`{self.plugin.prefix}renew {post.short_id}`."
                    )
                    await effects.promise(key, DirectMessage(poster, text))
            await effects.carry_out(key)

    async def _expire(self, job: JobContext[Any], post: Post, now: datetime) -> None:
        change = service.expire(post, now)
        if change is None:
            return
        effects = self.plugin.effects
        key = f"expired:{post.id}:{post.expires_at.isoformat()}"
        async with self.plugin.db.transaction():
            if not await self.store.apply(post, change, now=now):
                return
            poster = await self.store.requester_of(post)
            if poster is not None:
                text = (
                    f"Your post {post.short_id} (“{post.body}”) has expired. To bring it "
                    f"back, type `{self.plugin.prefix}renew {post.short_id}`."
                )
                await effects.promise(key, DirectMessage(poster, text))
        await effects.carry_out(key)
        await self.show_expired(job, post)

    async def show_expired(self, job: JobContext[Any], post: Post) -> None:
        """The room's post says it expired, and stops inviting help."""
        fresh = await self.store.by_id(post.id)
        if fresh is not None:
            values = views.announce_values(fresh, self.plugin.prefix)
            await job.refresh(fresh.short_id, self.plugin.render("post", **values))

    # -- digests -------------------------------------------------------------------------------
    async def digest_section(
        self, room_id: str, since: datetime, until: datetime
    ) -> DigestSection | None:
        """New offers, needs still waiting (de-identified: no list shows a poster) and thanks."""
        offers = await self.jobs.created_between(room_id, OFFER, since, until)
        waiting = await self.jobs.waiting_needs(room_id, until)
        thanks = await self.jobs.thanks_between(room_id, since, until)
        if not (offers or waiting or thanks):
            return None
        rendered = self.plugin.render(
            "digest",
            offers=[
                views.digest_row(p, room_id, views.details(p, until))
                for p in offers
                if p.state == "open"
            ],
            waiting=[
                views.digest_row(p, room_id, f" — {p.body} (waiting {views.age(p, until)})")
                for p in waiting
            ],
            thanks=[views.digest_row(p, room_id, "") for p in thanks],
            limit=DIGEST_LIMIT,
            prefix=self.plugin.prefix,
        )
        return DigestSection("Mutual aid", rendered.text, rendered.html, order=40)

    async def personal_digest_section(self, user_id: str) -> DigestSection | None:
        """The needs this person offered help with or is helping with (for their DM only)."""
        helping = await self.store.helping(user_id)
        if not helping:
            return None
        now = self.plugin.clock.now()
        text = "\n".join(f"• {line}" for line in views.helping_lines(helping, now))
        return DigestSection("Needs you offered to help with", text, order=40)

    async def public_section(self, room_id: str) -> PublicSection | None:
        """Open offers and needs for the room's public page, as the room lists them: a private
        need comes from the store with no poster at all, so it cannot be credited to anyone."""
        now = self.plugin.clock.now()
        offers = await self.store.open_posts(room_id, OFFER, now, limit=PUBLIC_LIMIT)
        needs = await self.store.open_posts(room_id, NEED, now, limit=PUBLIC_LIMIT)
        if not (offers or needs):
            return None
        return PublicSection(
            offers=tuple(public_post(p) for p in offers),
            needs=tuple(public_post(p) for p in needs),
        )

    # -- forgetting ----------------------------------------------------------------------------
    async def forget(self, user_id: str) -> ForgetReport:
        """Needs this person was helping with reopen (so nobody waits on a helper who is gone);
        then their posts go and their name comes off matches, hours and reports."""
        now = self.plugin.clock.now()
        reopened = await self.jobs.reopen_helped_by(user_id, now)
        public = await self.ledger.public_posts_of(user_id)
        removed, anonymised = await self.ledger.forget(user_id)
        for post in reopened:  # the room's post asks for help again
            fresh = await self.store.by_id(post.id)
            if fresh is not None:
                values = views.announce_values(fresh, self.plugin.prefix)
                key = f"helper-forgotten:{post.id}:{now.isoformat()}"
                await self.plugin.refresh(
                    post.short_id, self.plugin.render("post", **values), key=key
                )
        # Their own posts leave the room too (nobody is asked to !can what is gone). Not a
        # private need's: editing it the moment someone asked to be forgotten (maybe in the
        # room) would say whose it was, so that post is left as it stood (`!can` on it
        # answers that there is no such need).
        for post in public:
            gone = f"{post.short_id} was taken down by whoever posted it."
            await self.plugin.refresh(post.short_id, gone, key=f"forgotten:{post.id}")
        self.plugin.log.info(
            "forgot %s: %d posts removed, %d reopened", private(user_id), removed, len(reopened)
        )
        notes = [f"{p.short_id} is open again for other helpers" for p in reopened]
        return ForgetReport(removed=removed, anonymised=anonymised, notes=notes)


PUBLIC_LIMIT = 100  # open posts of each kind the public page may list


def public_post(post: Post) -> PublicPost:
    """A post as the page shows it; never the requester of a private need."""
    details = views.details(post, post.created_at).split(" — ", 1)[0].strip(" ·")
    return PublicPost(
        label=post.short_id,
        kind=post.kind,
        text=post.body,
        details=details,
        author=None if post.private else post.poster,
        posted_at=post.created_at,
        event_id=post.event_id,
    )
