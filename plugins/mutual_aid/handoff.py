"""The hand-off between neighbours: announcing posts, suggesting matches, ``!can`` →
the requester's answer → an introduction room, reports to moderators.

Who asked for a private need is read from the store (:meth:`AidStore.requester_of`) only to
message them or to introduce them to the helper they accepted; it is never put in a room
message, a list or a log line (people are logged with :func:`civicbot.logs.private`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from civicbot_plugins.mutual_aid import service, views
from civicbot_plugins.mutual_aid.ledger import AidLedger
from civicbot_plugins.mutual_aid.models import ACCEPTED, DECLINED, MATCHED, OFFERED, Match, Post
from civicbot_plugins.mutual_aid.parsing import NEED
from civicbot_plugins.mutual_aid.store import AidStore

from civicbot.api import (
    CommandError,
    Context,
    DirectMessage,
    JobContext,
    Message,
    NewRoom,
    PluginContext,
    Role,
    RoomNotice,
    TransportError,
    clean_text,
    pick_people,
    private,
)

MAX_MODERATORS_TOLD = 10
_LATER = (
    "Done: you accepted the offer for {id}. I couldn't start the private chat just now; "
    "I'll keep trying, and you'll both get an invitation."
)
CHOSE_ANOTHER = (
    "Thank you for offering to help with {id}. The person who asked has accepted another "
    "neighbour's offer this time, so there's nothing more for you to do. Other needs: "
    "`{prefix}needs` in the room."
)
SORTED = (
    "Thank you for offering to help with {id}. It has been sorted, so there's nothing more "
    "for you to do. Other needs: `{prefix}needs` in the room."
)
WITHDRAWN = (
    "{id} was withdrawn by the person who asked, so there's nothing more for you to do. "
    "Thank you for offering to help."
)
_ASKED = (
    "Thank you! I've asked the person who needs {id} whether they'd like your help; if they "
    "accept, I'll introduce you both in a private chat."
)


FRESH_DAYS = 7  # a room made, or joined by the bot, since then takes a private need only
# when its moderators marked it


def how_long_ago(days: float) -> str:
    """ "today", "3 days ago", "5 weeks ago", "2 years ago": enough to tell two rooms apart."""
    for unit, size in (("year", 365), ("month", 30), ("week", 7), ("day", 1)):
        count = int(days // size)
        if count >= (2 if unit != "day" else 1):
            return f"{count} {unit}{'s' * (count != 1)} ago"
    return "today"


@dataclass(frozen=True)
class CandidateRoom:
    """A room a private need could go to, with what tells look-alike rooms apart."""

    room_id: str
    name: str
    address: str
    people: int
    age_days: float | None
    moderators: list[str]
    bot_days: float | None = None  # how long the bot has been in it
    your_days: float | None = None  # how long the person has been in it

    @property
    def fresh(self) -> bool:
        """Made, or joined by the bot, in the last ``FRESH_DAYS`` days: a room an attacker
        could have just made or brought the bot into."""
        return any(d is not None and d < FRESH_DAYS for d in (self.age_days, self.bot_days))

    def describe(self) -> str:
        parts = [self.name]
        if self.address and self.address != self.name:
            parts.append(self.address)
        parts.append(f"{self.people} {'person' if self.people == 1 else 'people'}")
        if self.age_days is not None:
            parts.append(f"made {how_long_ago(self.age_days)}")
        if self.your_days is not None:
            parts.append(f"you joined {how_long_ago(self.your_days)}")
        if self.moderators:
            parts.append("moderators: " + ", ".join(self.moderators))
        return " — ".join(parts)


class AidHandoff:
    """The steps of a post's life that involve more than one person."""

    def __init__(self, plugin: PluginContext[Any], store: AidStore, ledger: AidLedger):
        self.plugin = plugin
        self.store = store
        self.ledger = ledger
        self.log = plugin.log
        plugin.effects.on_done(self._effect_done)

    async def _effect_done(self, key: str, result: str) -> None:
        """An introduction room was made: its id goes on the match, in the same transaction
        that marks the promise kept."""
        if key.startswith("intro:"):
            await self.store.set_intro_room(int(key.split(":")[1]), result)

    # -- posting -------------------------------------------------------------------------------
    async def announce(self, ctx: Context[Any], post: Post) -> None:
        """Post it in its room (a private need de-identified), once: a replay re-sends with the
        same transaction id and the homeserver drops it."""
        rendered = self.plugin.render("post", **views.announce_values(post, ctx.prefix))
        try:
            event_id = await ctx.send_message(
                post.room_id, Message(rendered.text, rendered.html), item=post.short_id
            )
        except TransportError as exc:
            # Told, and nothing half-done: a post nobody can see is not kept (issue 22 §2).
            self.log.warning("could not post %s in its room: %s", post.short_id, exc)
            await self.store.remove_unposted(post.id)
            raise CommandError(
                "I couldn't post that in the room you chose (I may not be allowed to write "
                "there), so nothing was saved. Send it again for another room."
            ) from None
        if event_id:
            await self.store.set_event(post.id, event_id)

    async def show(self, sender: Context[Any] | JobContext[Any], post: Post) -> None:
        """Edit the post's announcement to what is true of it now (edited, taken, done,
        withdrawn, removed, expired, open again): the room never invites help it can't give."""
        fresh = await self.store.by_id(post.id)
        if fresh is None:
            return
        rendered = self.plugin.render("post", **views.announce_values(fresh, self.plugin.prefix))
        await sender.refresh(fresh.short_id, rendered)

    async def suggest(self, ctx: Context[Any], post: Post, author: str) -> list[str]:
        """The best matches for a new post, as lines for its poster; offerers who opted in are
        told a neighbour needs something they offered (within their daily limit)."""
        found = await self.store.matches_for(post, ctx.now, author=author)
        if post.kind == NEED:
            # Only offers that share words with the need: a category-only suggestion is too
            # loose to message someone about.
            await self._notify_offerers(ctx, post, [c.post for c in found if c.score > 0])
        return views.match_lines(found, ctx.now)

    async def _notify_offerers(self, ctx: Context[Any], need: Post, offers: list[Post]) -> None:
        config = await self.plugin.config(need.room_id)
        if config.daily_notifications <= 0:
            return
        day = ctx.now.astimezone(await self.plugin.timezone(need.room_id)).date().isoformat()
        told: set[str] = set()
        for offer in offers:
            if not offer.notify or offer.poster is None or offer.poster in told:
                continue
            if not await self.ledger.take_notification(
                offer.poster, day, config.daily_notifications
            ):
                continue
            told.add(offer.poster)
            await ctx.dm(
                offer.poster,
                f"A neighbour needs something you offered ({offer.short_id}): "
                f"{need.body} — {need.short_id}. If you can help, type "
                f"`{ctx.prefix}can {need.short_id}`.",
            )

    async def choose_room(self, ctx: Context[Any], named: str | None) -> str:
        """Where a need sent by DM goes (issue 19 §2, issue 22 §2).

        The candidates come from the bot's own room state, not from past commands: rooms the
        bot and the sender are both in, with mutual aid on, that are neither a space, nor an
        introduction room, nor a room of two. A room made in the last ``FRESH_DAYS`` days (a
        look-alike an attacker just made), or one the bot joined in those days, is a candidate
        only if its moderators marked it (``accepts_private_needs``); marked rooms are listed
        first. Until the person names one, nothing is posted: they are asked, even when one
        room could take it, each room shown with what tells it apart (its address, members,
        age, how long they have been in it, its moderators)."""
        rooms = await self._candidate_rooms(ctx)
        if not rooms:
            raise CommandError(
                "I don't share a neighbourhood room with you where mutual aid is on and private "
                "needs are welcome, so nothing was posted. Ask a moderator of your neighbourhood "
                f"room to type `{ctx.prefix}config mutual_aid.accepts_private_needs true` there, "
                "then send me the need again."
            )
        if named is not None:
            key = named.strip().lower()
            picked = [
                r
                for i, r in enumerate(rooms, 1)
                if key in (str(i), r.name.lower(), r.address.lower()) or named == r.room_id
            ]
            if len(picked) == 1:
                return picked[0].room_id
        # Never by default, even when one room could take it: the person checks that it is the
        # room they know (a look-alike can share its name) before anything is posted there.
        listed = "\n".join(f"{i}. {r.describe()}" for i, r in enumerate(rooms, 1))
        typed = " ".join((ctx.event.body or "").split())
        typed = re.sub(r"\s*\|\s*room\s*:.*$", "", typed, flags=re.IGNORECASE)  # a wrong one
        again = (
            f"Send it again ending with `| room: 1`, like this:\n{typed} | room: 1"
            if typed and len(typed) <= 500
            else "Send it again ending with `| room: 1`."
        )
        if len(rooms) == 1:
            raise CommandError(
                "Is this the room to post it in? Nothing is posted until you say so.\n"
                f"{listed}\n{again}"
            )
        raise CommandError(
            f"Which room should I post it in? Nothing is posted until you choose.\n{listed}\n"
            f"{again.replace('`| room: 1`', '`| room:` and its number (or address)')}"
        )

    async def _candidate_rooms(self, ctx: Context[Any]) -> list[CandidateRoom]:
        rooms = self.plugin.rooms
        intro = await self.store.intro_rooms()
        now_ms = ctx.now.timestamp() * 1000
        found: list[tuple[bool, CandidateRoom]] = []
        for room_id in await rooms.joined_rooms():
            if room_id in intro or room_id == ctx.room_id:
                continue
            try:
                members = await rooms.joined_members(room_id)
                if ctx.sender not in members or len(members) <= 2:
                    continue
                config = await self.plugin.config(room_id)
                if not config.enabled:
                    continue
                create = await rooms.create_event(room_id) or {}
                if (create.get("content") or {}).get("type") == "m.space":
                    continue
                created = create.get("origin_server_ts")
                age_days = (now_ms - created) / 86_400_000 if isinstance(created, int) else None
                room = await self._describe(room_id, members, age_days)
                room = dataclasses.replace(
                    room,
                    bot_days=await self._days_in(ctx, room_id, rooms.bot_user_id),
                    your_days=await self._days_in(ctx, room_id, ctx.sender),
                )
                marked = bool(config.accepts_private_needs)
                if not marked and room.fresh:
                    continue  # a fresh room is offered only when its moderators opted in
                found.append((marked, room))
            except TransportError as exc:
                self.log.info("a room could not be checked for a private need: %s", exc)
        # Marked rooms first; unmarked ones stay listed, so marking a look-alike (its maker
        # moderates it) can't hide the real room.
        found.sort(key=lambda f: not f[0])
        return [room for _, room in found]

    async def _days_in(self, ctx: Context[Any], room_id: str, user_id: str) -> float | None:
        try:
            since = await self.plugin.rooms.joined_since(room_id, user_id)
        except TransportError as exc:  # the room is still shown by what else tells it apart
            self.log.info("could not tell how long someone has been in a room: %s", exc)
            return None
        return None if since is None else (ctx.now - since).total_seconds() / 86_400

    async def _describe(
        self, room_id: str, members: list[str], age_days: float | None
    ) -> CandidateRoom:
        rooms = self.plugin.rooms
        name = str((await rooms.state_event(room_id, "m.room.name") or {}).get("name") or "")
        alias = (await rooms.state_event(room_id, "m.room.canonical_alias") or {}).get("alias")
        power = await self.plugin.permissions.power_levels(room_id)
        moderators = sorted(m for m in members if m != rooms.bot_user_id and power.level(m) >= 50)[
            :3
        ]
        return CandidateRoom(
            room_id, name or str(alias or room_id), str(alias or ""), len(members) - 1,
            age_days, moderators,
        )  # fmt: skip

    async def requester_only(self, ctx: Context[Any], post: Post) -> Post:
        """A private need is answered for only in a DM: in a room, anyone asking gets the same
        refusal, so the reply can't tell the room who asked. The introduction room of the
        need is the exception: the helper there already knows, and the introduction tells the
        requester to type ``!done`` there."""
        if post.private and not await ctx.is_direct() and not await self._introduced_in(ctx, post):
            raise CommandError(
                f"{post.short_id} was asked privately: the person who asked answers me in a "
                "direct message, so nobody here learns who it was."
            )
        return post

    async def _introduced_in(self, ctx: Context[Any], post: Post) -> bool:
        """Whether ``ctx`` is in the introduction room of ``post``'s accepted helper, still
        holding nobody but the two of them and the bot."""
        accepted = await self.accepted_match(post)
        if accepted is None or accepted.intro_room_id != ctx.room_id:
            return False
        requester = await self.store.requester_of(post)
        allowed = {self.plugin.rooms.bot_user_id, accepted.helper, requester}
        return set(await self.plugin.rooms.joined_members(ctx.room_id)) <= allowed

    async def privately(self, ctx: Context[Any], content: Any) -> None:
        """Answer by DM (``!mine`` lists private needs), saying so where it was asked."""
        await ctx.dm(ctx.sender, content)
        if not await ctx.is_direct():
            await ctx.reply("I've sent it to you in a direct message.")

    # -- "I can do that for you" ---------------------------------------------------------------
    async def can(self, ctx: Context[Any], post: Post, answer_in_room: bool = True) -> str:
        """``!can N-42`` (or ✋, answered by DM): record the offer of help and ask the requester
        by DM. Returns the answer for the helper."""
        helper = ctx.sender
        in_room = answer_in_room and not await ctx.is_direct()
        if post.private and in_room and await self.store.is_owner(post, helper):
            # The room must not learn it was theirs: the answer a neighbour who never offered
            # would get here (matched, ended or open alike), the real one by DM.
            await ctx.dm(helper, f"{post.short_id} is your own need, so I've done nothing.")
            try:
                service.offer_help(post, is_owner=False, now=ctx.now, helper_match=None)
            except service.AidError as error:
                raise CommandError(str(error)) from None
            return _ASKED.format(id=post.short_id)
        declined = [
            m for m in await self.store.matches_of(post.id, (DECLINED,)) if m.helper == helper
        ]
        if declined:
            # One answer is enough: a declined helper can't message the requester again and again.
            raise CommandError(
                f"The person who asked for {post.short_id} has already answered your offer. "
                "Thank you all the same: `!needs` lists other needs."
            )
        transition = service.offer_help(
            post,
            is_owner=await self.store.is_owner(post, helper),
            now=ctx.now,
            helper_match=await self.store.live_match(post.id, helper),
        )
        del transition  # the need stays open; the match is what changes
        match, new = await self.store.add_match(post, helper, ctx.now)
        requester = await self.store.requester_of(post)
        if new and requester is not None:
            waiting = len(await self.waiting(post))
            named = ""
            if waiting > 1:  # a bare !accept takes the oldest: say how to pick this one
                named = " " + await self._unique_name(post, helper)
            others = f" {waiting} neighbours have offered now." if waiting > 1 else ""
            await ctx.dm(
                requester,
                f"{helper} offers to help with {post.short_id} (“{post.body}”).{others} Type "
                f"`{ctx.prefix}accept {post.short_id}{named}` to be introduced in a private "
                f"chat, or `{ctx.prefix}decline {post.short_id}{named}`.",
            )
        self.log.info("offer of help %s on %s by %s", match.id, post.short_id, private(helper))
        return _ASKED.format(id=post.short_id)

    async def _names(self, post: Post) -> dict[str, str]:
        """Those waiting for an answer on ``post``, by the names the room shows."""
        return {
            m.helper: await self.plugin.rooms.person_name(post.room_id, m.helper)
            for m in await self.store.matches_of(post.id, (OFFERED,))
            if m.helper is not None
        }

    async def _unique_name(
        self, post: Post, helper: str, names: dict[str, str] | None = None
    ) -> str:
        """A name the requester can type to pick ``helper`` and nobody else: the display name
        when it names only them among those waiting (``names``, read if not given), else the
        Matrix id."""
        names = names if names is not None else await self._names(post)
        shown = names.get(helper, helper)
        return shown if pick_people(shown, names) == [helper] else helper

    async def pending(
        self, ctx: Context[Any], post: Post, helper: str | None, verb: str, is_owner: bool
    ) -> Match | None:
        """The offer of help the requester answers: ``helper``'s (named by Matrix id, short
        name or display name), else the oldest waiting. A name that picks none of those
        waiting, or several, is answered with who is waiting, by the names the room shows."""
        waiting = await self.store.matches_of(post.id, (OFFERED,))
        if helper is not None and not is_owner:  # only the requester learns who offered
            waiting = [m for m in waiting if m.helper == helper]
        if helper is None or not waiting or not is_owner:
            return waiting[0] if waiting else None
        names = await self._names(post)
        picked = pick_people(helper, names)
        if len(picked) == 1:
            return next(m for m in waiting if m.helper == picked[0])
        shown = clean_text(helper)[:40]
        problem = (
            f"“{shown}” could be more than one of them"
            if picked
            else f"Nobody called “{shown}” is waiting for an answer on {post.short_id}"
        )
        # Each with their Matrix id: two can show the same name.
        listed = ", ".join(f"{names[p]} ({p})" if names[p] != p else p for p in (picked or names))
        example = await self._unique_name(post, next(iter(picked or names)), names)
        text = (
            f"{problem}. Waiting: {listed}. Type `{ctx.prefix}{verb} {post.short_id} "
            f"{example}` with the name of the one you mean."
        )
        if await ctx.is_direct():
            raise CommandError(text)
        # Who offered is the requester's to know, not the room's.
        await ctx.dm(ctx.sender, text)
        raise CommandError(f"I've sent you who is waiting on {post.short_id} by direct message.")

    async def accept(self, ctx: Context[Any], post: Post, helper: str | None) -> str:
        is_owner = await self.store.is_owner(post, ctx.sender)
        if self.store.replayed(post, ctx.event.event_id):
            # This very !accept, handled again: the bot stopped after it was recorded.
            accepted = await self.accepted_match(post)
            await self.show(ctx, post)
            if accepted is None or not await self.plugin.effects.carry_out(intro_key(accepted)):
                return _LATER.format(id=post.short_id)
            return (
                f"Done: I've started a private chat with you and the helper for "
                f"{post.short_id}. Look for the invitation."
            )
        match = await self.pending(ctx, post, helper, "accept", is_owner)
        accepted = await self.accepted_match(post) if is_owner and post.state == MATCHED else None
        if accepted is not None and accepted.intro_room_id is None:
            # Accepted, but the room is not made yet (the homeserver refused, or is down): the
            # requester typing !accept again tries now (the promise itself is never lost).
            if await self.introduce(post, accepted, ctx.sender):
                return f"Done: I've started a private chat for {post.short_id}."
            return _LATER.format(id=post.short_id)
        transition = service.accept(post, match, is_owner=is_owner, now=ctx.now)
        assert match is not None and match.helper is not None
        # The acceptance and the promise of the introduction room commit together: a crash
        # after this can neither lose the room nor, retried, make a second one.
        async with self.plugin.db.transaction():
            others = [m for m in await self.waiting(post) if m.id != match.id]
            applied = await self.store.apply(
                post, transition, now=ctx.now, match=match, source_event=ctx.event.event_id
            )
            if not applied:
                raise CommandError(f"{post.short_id} changed just now; look again with `!mine`.")
            await self.promise_introduction(post, match, ctx.sender)
            told = await self.promise_thanks(ctx, post, others, CHOSE_ANOTHER)
        await self.show(ctx, post)  # taken: the post stops inviting help
        await self.keep(told)
        if not await self.plugin.effects.carry_out(intro_key(match)):
            return _LATER.format(id=post.short_id)
        self.log.info("introduced helper %s on %s", private(match.helper), post.short_id)
        return (
            f"Done: I've started a private chat with you and the helper for {post.short_id}. "
            "Look for the invitation."
        )

    async def promise_introduction(self, post: Post, match: Match, requester: str) -> None:
        """Promise a small private room with exactly the two of them and the bot, and the
        introduction in it: made once per match, however often this runs."""
        assert match.helper is not None
        config = await self.plugin.config(post.room_id)
        intro = self.plugin.render(
            "intro",
            post=post,
            helper=match.helper,
            requester=requester,
            timebank=config.timebank,
        )
        room = NewRoom(
            f"{post.short_id}: mutual aid",
            (requester, match.helper),
            (RoomNotice(intro.text, intro.html, (match.helper, requester)),),
        )
        await self.plugin.effects.promise(intro_key(match), room)

    async def introduce(self, post: Post, match: Match, requester: str) -> bool:
        """Promise the introduction (if it is not yet) and keep it now if the homeserver lets
        us; False when it is still to be made (it is retried every minute)."""
        await self.promise_introduction(post, match, requester)
        return await self.plugin.effects.carry_out(intro_key(match)) is not None

    async def decline(self, ctx: Context[Any], post: Post, helper: str | None) -> str:
        is_owner = await self.store.is_owner(post, ctx.sender)
        match = await self.pending(ctx, post, helper, "decline", is_owner)
        transition = service.decline(post, match, is_owner=is_owner)
        assert match is not None
        await self.store.apply(post, transition, now=ctx.now, match=match)
        if match.helper is not None:
            await ctx.dm(
                match.helper,
                f"Thank you for offering to help with {post.short_id}; this time the neighbour "
                f"said no thanks. Other needs: `{ctx.prefix}needs` in the room.",
            )
        return f"OK, I've told them kindly. {post.short_id} stays open for other offers."

    async def waiting(self, post: Post) -> list[Match]:
        """The offers of help still waiting for the requester's answer."""
        return await self.store.matches_of(post.id, (OFFERED,))

    async def promise_thanks(
        self, ctx: Context[Any], post: Post, helpers: list[Match], note: str
    ) -> list[str]:
        """Promise each of ``helpers`` (offers the requester's change leaves unanswered) a
        kind word by DM, inside the transaction of that change: once per offer, however often
        the command is replayed or the bot restarted. Returns the keys to :meth:`keep`."""
        keys = []
        for match in helpers:
            if match.helper is None or match.helper == ctx.sender:
                continue
            key = f"thanks:{match.id}"
            text = note.format(id=post.short_id, prefix=ctx.prefix)
            await self.plugin.effects.promise(key, DirectMessage(match.helper, text))
            keys.append(key)
        return keys

    async def keep(self, keys: list[str]) -> None:
        """Send the promised notes now; any the homeserver refuses are retried by the engine."""
        for key in keys:
            await self.plugin.effects.carry_out(key)

    async def tell_reopened(self, ctx: Context[Any], post: Post) -> None:
        requester = await self.store.requester_of(post)
        if requester is not None:
            await ctx.dm(
                requester,
                f"The helper for {post.short_id} had to back out, so it is open again and "
                "others can offer to help.",
            )

    async def accepted_match(self, post: Post) -> Match | None:
        found = await self.store.matches_of(post.id, (ACCEPTED,))
        return found[-1] if found else None

    # -- safety --------------------------------------------------------------------------------
    async def report(self, ctx: Context[Any], post: Post, reason: str) -> str:
        reason = service.check_report(post, reason)
        await self.ledger.add_report(post, ctx.sender, reason, ctx.now)
        told = 0
        for member in await self.plugin.rooms.joined_members(post.room_id):
            if member in (self.plugin.rooms.bot_user_id, ctx.sender):
                continue
            if told >= MAX_MODERATORS_TOLD:
                break
            if await self.plugin.permissions.has(post.room_id, member, Role.MODERATOR):
                await ctx.dm(
                    member,
                    f"{post.short_id} was reported: “{reason}”. The post: {post.body}. To take "
                    f"it down, type `{ctx.prefix}withdraw {post.short_id}` (the poster is "
                    "told).",
                )
                told += 1
        self.log.info("report on %s sent to %d moderators", post.short_id, told)
        return "Thank you. The room's moderators have been told privately."

    async def removed(self, ctx: Context[Any], post: Post) -> None:
        poster = await self.store.requester_of(post)
        if poster is not None and poster != ctx.sender:
            await ctx.dm(
                poster,
                f"A moderator took down your post {post.short_id} (“{post.body}”). Ask the "
                "room's moderators if you'd like to know why.",
            )


def intro_key(match: Match) -> str:
    """The effect key of a match's introduction room (one room per match, ever)."""
    return f"intro:{match.id}"
