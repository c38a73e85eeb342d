"""``!offer``, ``!need``, ``!can``, ``!accept``, ``!decline``, ``!done``, ``!withdraw``, ``!renew``,
``!needs``, ``!offers``, ``!find``, ``!mine``, ``!hours``, ``!report``; ✋ on a need's post.

Thin handlers: they read the input, check it with :mod:`service`, write with the store and
leave the steps between people to :mod:`handoff` and the timers and hooks to :mod:`lifecycle`.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Any

from civicbot_plugins.mutual_aid import handoff, service, views
from civicbot_plugins.mutual_aid.config import MutualAidConfig
from civicbot_plugins.mutual_aid.errors import read_post
from civicbot_plugins.mutual_aid.handoff import AidHandoff
from civicbot_plugins.mutual_aid.ledger import AidLedger
from civicbot_plugins.mutual_aid.lifecycle import AidUpkeep
from civicbot_plugins.mutual_aid.migrations import MIGRATIONS
from civicbot_plugins.mutual_aid.models import LIVE_MATCH_STATES, OPEN, REMOVED, Post
from civicbot_plugins.mutual_aid.parsing import (
    DEFAULT_EXPIRY,
    NEED,
    OFFER,
    AidInputError,
    format_minutes,
    parse_done,
    parse_post_id,
)
from civicbot_plugins.mutual_aid.rooms import AidRooms
from civicbot_plugins.mutual_aid.sealing import Sealer
from civicbot_plugins.mutual_aid.service import AidError
from civicbot_plugins.mutual_aid.store import AidStore

from civicbot.api import (
    CommandError,
    Context,
    DigestSection,
    EventKind,
    ForgetReport,
    Message,
    Plugin,
    PublicSection,
    Rest,
    Role,
    clean_text,
    command,
    on,
    private,
)

_ROOM_PART = re.compile(r"(?:^|\s*\|\s*|\n)\s*room\s*:?\s*(?P<room>[^|\n]+?)\s*$", re.I)
Ctx = Context[MutualAidConfig]
NO_HELPER = Rest("")  # !accept N-42 alone: the oldest offer waiting


class MutualAidPlugin(Plugin[MutualAidConfig]):
    name = "mutual_aid"
    description = "Offers and needs, matched in the room; private needs by direct message."
    templates = ("digest", "intro", "list", "post")
    migrations = MIGRATIONS

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        sealer = Sealer(bytes.fromhex(ctx.keyed_hash("mutual_aid:seal")))
        self.store = AidStore(ctx.db, sealer, ctx.keyed_hash)
        self.ledger = AidLedger(self.store)
        self.rooms = AidRooms(ctx.db)
        self.handoff = AidHandoff(ctx, self.store, self.ledger)
        self.upkeep = AidUpkeep(ctx, self.store, self.ledger)

    async def setup(self) -> None:
        await self.ctx.db.execute("PRAGMA secure_delete=ON")  # forgotten rows are overwritten

    async def room_replaced(self, old_room: str, new_room: str) -> None:
        """A room upgrade: open and matched posts move to the new room (a need sent by DM now
        goes there); finished ones stay with the old room's history."""
        await self.ctx.db.execute(
            "UPDATE mutual_aid_posts SET room_id = ? WHERE room_id = ? "
            "AND state IN ('open', 'matched')",
            (new_room, old_room),
        )
        await self.ctx.db.execute(
            "UPDATE OR IGNORE mutual_aid_rooms SET room_id = ? WHERE room_id = ?",
            (new_room, old_room),
        )

    async def caught_up(self) -> None:
        self.upkeep.start()  # after the backlog: a !renew typed while down is read first

    async def teardown(self) -> None:
        self.ctx.jobs.cancel("expiry")

    def command_error(self, error: Exception) -> str | None:
        """The rules in :mod:`service` and :mod:`parsing` refuse with a message that says what
        to type instead: every command answers with it."""
        if isinstance(error, AidError | AidInputError):
            return str(error)
        return None

    # -- posting -------------------------------------------------------------------------------
    @command("offer", examples=("!offer I have a ladder to lend | ongoing",))
    async def offer(self, ctx: Ctx, text: Rest) -> None:
        """Offer something you can do or lend; re-post with the id (`!offer O-7 | …`) to edit.

        Add parts after |: a category, today / this week / anytime, `area: Elm Road`,
        `expires in 7 days`, one-off / ongoing (the default for offers)."""
        await self._post(ctx, OFFER, text)

    @command("need", examples=("!need help moving a sofa on saturday | this week",))
    async def need(self, ctx: Ctx, text: Rest) -> None:
        """Ask for help. Send it to me by direct message to stay anonymous in the room.

        Add parts after |: a category, today / this week / anytime, `area: Elm Road`,
        `expires in 7 days`. By DM, `room: Elm Street` picks the room if you are in several.
        Re-post with the id (`!need N-42 | …`) to edit."""
        await self._post(ctx, NEED, text)

    async def _post(self, ctx: Ctx, kind: str, text: str) -> None:
        text = clean_text(text)
        direct = await ctx.is_direct()
        if direct and kind == OFFER:
            raise CommandError(
                "Offers are posted in the room, so neighbours can see them: type the "
                "`!offer …` there."
            )
        named = None
        if direct and (found := _ROOM_PART.search(text)):
            named, text = found["room"].strip(), text[: found.start()]
        spec = read_post(kind, text)
        if spec.edit_of is not None:
            await self._edit(ctx, kind, spec)
            return
        room_id = ctx.room_id
        if direct:
            room_id = await self.handoff.choose_room(ctx, named)
        else:
            await self.rooms.seen(ctx.room_id, ctx.now)
        config = await self.ctx.config(room_id)
        if spec.expires_in == DEFAULT_EXPIRY:
            spec = dataclasses.replace(spec, expires_in=timedelta(days=config.expiry_days))
        post, new = await self.store.create(
            spec,
            room_id=room_id,
            source_event_id=ctx.event.event_id,
            author=ctx.sender,
            private=direct,
            now=ctx.now,
            thanks=config.thanks_default,
        )
        if direct:  # no pseudonym: one shared with public actions would name the requester
            self.log.info("private need %s posted", post.short_id)
        else:
            self.log.info("%s %s posted by %s", kind, post.short_id, private(ctx.sender))
        if post.event_id is None:
            await self.handoff.announce(ctx, post)
        matches = await self.handoff.suggest(ctx, post, ctx.sender) if new else []
        await ctx.reply(views.posted(post, spec.category_suggested, direct, matches, ctx.prefix))

    async def _edit(self, ctx: Ctx, kind: str, spec: Any) -> None:
        post = await self._find(kind, spec.edit_of)
        if post.private and not await ctx.is_direct():
            # Owner or not, the same answer here: the room must not learn whose it is.
            await self.handoff.requester_only(ctx, post)
        if not await self.store.is_owner(post, ctx.sender):
            raise CommandError(f"Only the person who posted {post.short_id} can change it.")
        if post.state not in ("open", "matched"):
            raise CommandError(f"{post.short_id} is {post.state}; post it again with `!{kind} …`.")
        post = await self.store.edit(post, spec, ctx.now)
        await self.handoff.show(ctx, post)  # the room's post says what it says now
        await ctx.reply(f"{post.short_id} is updated: {post.body}")

    # -- between neighbours --------------------------------------------------------------------
    @command("can", examples=("!can N-42",))
    async def can(self, ctx: Ctx, need_id: str) -> None:
        """Offer to help with a need: the person who asked decides whether to accept."""
        await ctx.reply(await self.handoff.can(ctx, await self._arg(need_id, NEED, ctx)))

    @on(EventKind.MEMBERSHIP)
    async def room_in_use(self, ctx: Ctx) -> bool:
        """Someone joined a room with mutual aid on: a need sent by DM may be posted there.
        Any other membership change is not for this hook (``False``: nothing recorded)."""
        if ctx.event.membership != "join" or await ctx.is_direct():
            return False
        await self.rooms.seen(ctx.room_id, ctx.now)
        return True

    @on(EventKind.REACTION)
    async def hand_raised(self, ctx: Ctx) -> bool:
        """✋ on a need's post is `!can` for it; any other reaction is not for this hook
        (``False``, so the core writes no ``core_handled`` row for every 👍 in the room)."""
        relation = ctx.event.relates_to or {}
        if relation.get("rel_type") != "m.annotation":
            return False
        if not str(relation.get("key", "")).startswith(views.HAND):
            return False
        post = await self.store.by_event(str(relation.get("event_id", "")))
        if post is None or post.kind != NEED:
            return False
        try:
            answer = await self.handoff.can(ctx, post, answer_in_room=False)
        except AidError as error:
            answer = str(error)
        await ctx.dm(ctx.sender, answer)  # a reaction has no thread to answer in
        return True

    @command("accept", examples=("!accept N-42", "!accept N-42 Sam"))
    async def accept(self, ctx: Ctx, need_id: str, helper: Rest = NO_HELPER) -> None:
        """Accept the neighbour who offered to help with your need (name them if several).

        Name a helper by their display name or the short name of their Matrix id."""
        post = await self.handoff.requester_only(ctx, await self._arg(need_id, NEED))
        await ctx.reply(await self.handoff.accept(ctx, post, helper.strip() or None))

    @command("decline", examples=("!decline N-42",))
    async def decline(self, ctx: Ctx, need_id: str, helper: Rest = NO_HELPER) -> None:
        """Say no thanks to an offer of help with your need; it stays open."""
        post = await self.handoff.requester_only(ctx, await self._arg(need_id, NEED))
        await ctx.reply(await self.handoff.decline(ctx, post, helper.strip() or None))

    @command("done", examples=("!done N-42", "!done N-42 2h thanks"))
    async def done(self, ctx: Ctx, id_and_more: Rest) -> None:
        """Mark your need met (or a one-off offer given); add `thanks` to thank in the room.

        In a timebank room add the time, like `2h`, to record hours given by your helper;
        `quietly` leaves out the thank-you."""
        post_id, *extra = id_and_more.split()
        post = await self.handoff.requester_only(ctx, await self._arg(post_id))
        thanks, minutes = parse_done(extra, post.thanks)
        told = []
        if not self.store.replayed(post, ctx.event.event_id):  # else: done; finish the rest
            accepted = await self.handoff.accepted_match(post)
            config = await self.ctx.config(post.room_id)
            change = service.mark_done(
                post,
                is_owner=await self.store.is_owner(post, ctx.sender),
                accepted=accepted,
                minutes=minutes,
                timebank=config.timebank,
            )
            async with self.ctx.db.transaction():
                others = await self.handoff.waiting(post)  # offers left unanswered: thanked
                await self._apply(ctx, post, change, show=False, now=ctx.now, match=accepted)
                told = await self.handoff.promise_thanks(ctx, post, others, handoff.SORTED)
                if minutes and accepted is not None and accepted.helper is not None:
                    helper = accepted.helper
                    await self.ledger.record_hours(post, helper, ctx.sender, minutes, ctx.now)
        await self.handoff.show(ctx, post)  # done: the post stops inviting help
        await self.handoff.keep(told)
        if thanks and post.kind == NEED:
            await self.upkeep.set_thanks(post.id)
            thank = f"Thank you to the neighbour who helped with {post.short_id}!"
            await ctx.send_message(post.room_id, Message(thank))
        hours = f" {format_minutes(minutes)} recorded." if minutes else ""
        await ctx.reply(f"{post.short_id} is done — thank you for using mutual aid.{hours}")

    @command("withdraw", examples=("!withdraw N-42",))
    async def withdraw(self, ctx: Ctx, post_id: str) -> None:
        """Take down your post, or back out of helping (the need reopens). Moderators: remove."""
        post = await self._arg(post_id)
        is_owner = await self.store.is_owner(post, ctx.sender)
        if self.store.replayed(post, ctx.event.event_id):
            await self._withdrawn_before(ctx, post, is_owner)  # stopped before it had finished
            return
        helper_match = await self.store.live_match(post.id, ctx.sender)
        may_remove = await self.ctx.permissions.has(post.room_id, ctx.sender, Role.MODERATOR)
        if helper_match is None and not may_remove:
            post = await self.handoff.requester_only(ctx, post)  # in a room, the same for anyone
        # In a room, a moderator removes even their own private need: "withdrawn" would say
        # whose it was.
        in_room = post.private and not await ctx.is_direct()
        moderator = helper_match is None and may_remove and (in_room or not is_owner)
        if moderator:
            change = service.remove(post, is_moderator=True)
        else:
            change = service.withdraw(post, is_owner=is_owner, helper_match=helper_match)
        async with self.ctx.db.transaction():
            live = await self.store.matches_of(post.id, LIVE_MATCH_STATES)
            await self._apply(ctx, post, change, show=False, now=ctx.now, match=helper_match)
            told = []
            if is_owner and not moderator:  # those who had offered or were helping
                told = await self.handoff.promise_thanks(ctx, post, live, handoff.WITHDRAWN)
        await self.handoff.show(ctx, post)  # withdrawn, removed or open again
        await self.handoff.keep(told)
        if moderator:
            await self.handoff.removed(ctx, post)
            await ctx.reply(f"{post.short_id} is removed; its poster has been told.")
        elif is_owner:
            await ctx.reply(f"{post.short_id} is withdrawn.")
        else:
            if change.reopened:
                await self.handoff.tell_reopened(ctx, post)
            await ctx.reply(f"OK, you're no longer down to help with {post.short_id}.")

    async def _withdrawn_before(self, ctx: Ctx, post: Post, is_owner: bool) -> None:
        """The rest of a ``!withdraw`` whose change was made before the bot stopped: the post
        shown as it is, whoever was owed a word told (each send repeats its transaction id),
        and the answer the first run would have given."""
        await self.handoff.show(ctx, post)
        if post.state == REMOVED:
            await self.handoff.removed(ctx, post)
            await ctx.reply(f"{post.short_id} is removed; its poster has been told.")
        elif is_owner:
            await ctx.reply(f"{post.short_id} is withdrawn.")
        else:
            if post.state == OPEN:
                await self.handoff.tell_reopened(ctx, post)
            await ctx.reply(f"OK, you're no longer down to help with {post.short_id}.")

    @command("renew", examples=("!renew N-42",))
    async def renew(self, ctx: Ctx, post_id: str) -> None:
        """Keep your post up for longer (or bring back one that expired)."""
        post = await self.handoff.requester_only(ctx, await self._arg(post_id))
        days = (await self.ctx.config(post.room_id)).expiry_days
        change, until = service.renew(
            post,
            is_owner=await self.store.is_owner(post, ctx.sender),
            now=ctx.now,
            extend_by=timedelta(days=days),
        )
        await self._apply(ctx, post, change, now=ctx.now, expires_at=until)
        await ctx.reply(f"{post.short_id} stays up until {until:%a %-d %b}.")

    # -- looking -------------------------------------------------------------------------------
    @command("needs")
    async def needs(self, ctx: Ctx) -> None:
        """The open needs here, most urgent and newest first."""
        await self._list(ctx, NEED)

    @command("offers")
    async def offers(self, ctx: Ctx) -> None:
        """The open offers here, most urgent and newest first."""
        await self._list(ctx, OFFER)

    async def _list(self, ctx: Ctx, kind: str) -> None:
        await self._in_room(ctx)
        posts = await self.store.open_posts(ctx.room_id, kind, ctx.now)
        hint = "`!can N-…` offers help." if kind == NEED else "`!need …` asks for something."
        await ctx.reply_template(
            "list",
            title=f"Open {kind}s here:",
            lines=views.lines(posts, ctx.now),
            empty=f"No open {kind}s just now.",
            hint=hint,
        )

    @command("find", examples=("!find ladder",))
    async def find(self, ctx: Ctx, words: Rest) -> None:
        """Search the open offers and needs here."""
        await self._in_room(ctx)
        text = clean_text(words)
        if not text.strip():
            raise CommandError("Say what to look for, like `!find ladder`.")
        found = await self.store.search(ctx.room_id, text[:200], ctx.now, limit=10)
        await ctx.reply_template(
            "list",
            title=f"Found for “{text[:60]}”:",
            lines=views.match_lines(found, ctx.now),
            empty="Nothing open matches that. `!offers` and `!needs` list everything.",
            hint="",
        )

    @command("mine")
    async def mine(self, ctx: Ctx) -> None:
        """Your posts and the needs you are helping with (sent to you privately)."""
        own, helping = await self.store.mine(ctx.sender), await self.store.helping(ctx.sender)
        body = self.ctx.render(
            "list",
            title="Your posts:",
            lines=views.lines(own, ctx.now) + views.helping_lines(helping, ctx.now),
            empty="You have no open posts, and you're not helping with any need just now.",
            hint="",
        )
        await self.handoff.privately(ctx, body)

    @command("hours")
    async def hours(self, ctx: Ctx) -> None:
        """Your timebank hours, given and received (sent to you privately)."""
        direct = await ctx.is_direct()
        if not direct and not ctx.config.timebank:
            raise CommandError(
                "The timebank is not on in this room, so no hours are kept here. A moderator "
                f"can switch it on with `{ctx.prefix}config mutual_aid.timebank true`."
            )
        balance = await self.ledger.balance(ctx.sender)
        if direct and not balance.given and not balance.received:
            raise CommandError(
                "No timebank hours are recorded for you yet. In a room that keeps a timebank, "
                f"the person helped records them with `{ctx.prefix}done N-… 2h`."
            )
        await self.handoff.privately(
            ctx,
            f"Timebank: you gave {format_minutes(balance.given)} and received "
            f"{format_minutes(balance.received)}.",
        )

    @command("report", examples=("!report N-42 this looks like a scam",))
    async def report(self, ctx: Ctx, id_and_why: Rest) -> None:
        """Flag a post to the room's moderators, privately: its id, then why."""
        post_id, _, why = id_and_why.strip().partition(" ")
        post = await self._arg(post_id, member=ctx)
        await ctx.reply(await self.handoff.report(ctx, post, clean_text(why)))

    # -- hooks ---------------------------------------------------------------------------------
    async def digest_section(self, room_id: str, since: Any, until: Any) -> DigestSection | None:
        return await self.upkeep.digest_section(room_id, since, until)

    async def personal_digest_section(
        self, user_id: str, since: Any, until: Any
    ) -> DigestSection | None:
        return await self.upkeep.personal_digest_section(user_id)

    async def public_section(self, room_id: str) -> PublicSection | None:
        return await self.upkeep.public_section(room_id)

    async def export_user_data(self, user_id: str) -> dict[str, Any] | None:
        return await self.ledger.export(user_id)

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        return await self.upkeep.forget(user_id)

    # -- helpers -------------------------------------------------------------------------------
    async def _arg(self, raw: str, kind: str | None = None, member: Ctx | None = None) -> Post:
        """The post ``raw`` names. With ``member``, only for a member of the post's room:
        anyone else gets the answer a missing post gets, so outsiders learn nothing of it."""
        post = await self._parse_arg(raw, kind)
        if member is not None and member.sender not in await self.ctx.rooms.joined_members(
            post.room_id
        ):
            raise CommandError(
                f"There's no {post.short_id}. `!needs` and `!offers` list the open posts here."
            )
        return post

    async def _parse_arg(self, raw: str, kind: str | None = None) -> Post:
        try:
            found_kind, number = parse_post_id(raw)
        except AidInputError as error:
            raise CommandError(f"{error} `!needs` and `!offers` list them.") from None
        if kind is not None and found_kind != kind:
            raise CommandError(
                f"{raw.upper()} is an offer, not a need. To ask for something, post it with "
                "`!need …`: matching offers are suggested to you."
            )
        return await self._find(found_kind, number)

    async def _find(self, kind: str, number: int | None) -> Post:
        post = await self.store.get(kind, number or 0)
        label = f"{'N' if kind == NEED else 'O'}-{number}"
        if post is None:
            raise CommandError(
                f"There's no {label}. `!needs` and `!offers` list the open posts here."
            )
        return post

    async def _apply(
        self, ctx: Ctx, post: Post, change: Any, show: bool = True, **values: Any
    ) -> None:
        """Apply ``change``; then edit the post to say so, unless ``show`` is False (inside a
        transaction, where nothing may wait on the homeserver: the caller shows it after)."""
        values.setdefault("source_event", ctx.event.event_id)
        if not await self.store.apply(post, change, **values):  # a concurrent change won
            raise CommandError(f"{post.short_id} changed just now; look again with `!mine`.")
        if show:
            await self.handoff.show(ctx, post)  # renewed, open again

    async def _in_room(self, ctx: Ctx) -> None:
        if await ctx.is_direct():
            raise CommandError("Type this in your neighbourhood room: it lists that room's posts.")
        await self.rooms.seen(ctx.room_id, ctx.now)
