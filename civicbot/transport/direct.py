"""Direct chats: which room is a private one-to-one chat with a person, and keeping it so.

The rule (DESIGN.md §3): a room is a person's DM with the bot only when all of these hold —

- it is not public: its join rule is ``invite``;
- its joined and invited members are exactly the bot and that person;
- it was made as a DM by one of the two: its creator (the ``m.room.create`` sender, with no
  other ``additional_creators``) is the bot or the person, and the room is recorded for that
  person in the bot's ``m.direct`` account data. The bot records a room there when it creates one
  for the person (``is_direct``), or when it joins a room the person created and invited it to
  with ``is_direct`` (as Element starts a DM), or when a room's own history shows one of those
  (a DM from before the bot kept ``m.direct``). Nothing else is ever recorded.

So a room someone else made is never adopted as another person's DM, however its membership
changes, and a room that merely has two members is not a DM. The rule is checked against the
homeserver's current state before every private send; on top of that, when a third person is
invited to or joins a recorded DM (or it is made public), the bot says so there, leaves and
forgets it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from nio import AsyncClient, RoomCreateError, RoomPreset

from civicbot import failpoints
from civicbot.core.events import Event, EventKind, Message
from civicbot.storage.database import Database
from civicbot.transport import TransportError
from civicbot.transport.crypto import ENCRYPTION_STATE, RoomCrypto
from civicbot.transport.http import HomeserverApi
from civicbot.transport.sync import Invite

log = logging.getLogger("civicbot.transport.matrix")

NOT_DIRECT_CACHE = 10_000  # rooms remembered as not a DM (cleared whole when full)
MEMBER_HISTORY_STEPS = 5  # how far back to look for the invite that made a room a DM
# A DM being made when the bot stopped is taken up if the homeserver stamped its creation at
# most this long before the attempt was noted (the two clocks may differ a little).
PENDING_SLACK_MS = 5 * 60_000
NO_LONGER_PRIVATE = (
    "Someone else has been let into this chat, so it is no longer private and I'm leaving it. "
    "Ask me for anything private in a room we share and I'll start a new direct chat with you."
)


def dm_problem(state: list[dict[str, Any]], bot_id: str, person: str, recorded: bool) -> str | None:
    """Why a room with this state is not ``person``'s DM with the bot, or None when it is.

    ``state`` is the room's full current state (``GET /rooms/{id}/state``); ``recorded`` says
    whether the bot's ``m.direct`` lists the room for ``person``."""
    if not person or person == bot_id:
        return "not a person"
    join_rule, creator, extra_creators = None, None, []
    present: set[str] = set()
    for raw in state:
        kind, key = raw.get("type"), raw.get("state_key")
        content = raw.get("content")
        if not isinstance(content, dict):
            continue
        if kind == "m.room.join_rules" and key == "":
            join_rule = content.get("join_rule")
        elif kind == "m.room.create" and key == "":
            creator = raw.get("sender")
            extra = content.get("additional_creators")
            extra_creators = extra if isinstance(extra, list) else []
        elif kind == "m.room.member" and content.get("membership") in ("join", "invite"):
            present.add(str(key))
    if join_rule != "invite":
        return "the room is not invite-only"
    if present != {bot_id, person}:
        return "someone else is in the room"
    if creator not in (bot_id, person) or any(c not in (bot_id, person) for c in extra_creators):
        return "someone else created the room"
    if not recorded:
        return "the room was not made as a direct chat"
    return None


class DirectChats:
    """Finds, creates, records, checks and forgets the bot's direct chats."""

    def __init__(
        self,
        client: AsyncClient,
        api: HomeserverApi,
        db: Database,
        user_id: str,
        crypto: RoomCrypto | None = None,
        keyed_hash: Callable[[str], str] | None = None,
    ):
        self.user_id = user_id
        self._keyed_hash = keyed_hash
        self._client = client
        self._api = api
        self._crypto = crypto
        self._db = db
        self._m_direct: dict[str, list[str]] | None = None  # the bot's m.direct, cached
        self._invited: dict[str, Invite] = {}  # is_direct invites from their room's creator
        # Rooms found NOT to be a person's DM, until the room's state changes: a group room's
        # `!need` no longer fetches its whole state each time. Only the safe answer is cached:
        # a room that passes the rule is checked against the homeserver at every call.
        self._not_direct: dict[str, set[str]] = {}

    # -- the m.direct record -------------------------------------------------------------------
    def _saved_key(self, person: str) -> str:
        """Where the DM last used with ``person`` is kept: under a keyed hash of the person, so
        a copy of the database does not say whose DM a room is (the homeserver's ``m.direct``
        does, and the operator of the homeserver is trusted with that already)."""
        if self._keyed_hash is None:
            return f"dm:{person}"
        return "dm:~" + self._keyed_hash(f"dm:{person}")

    async def tidy_legacy(self) -> None:
        """Drop what older versions kept in clear: ``dm:<person>`` rows, and the per-room
        time marks of direct chats (both would tie a person to the moment they wrote)."""
        if self._keyed_hash is None:
            return
        await self._db.execute("DELETE FROM core_kv WHERE key LIKE 'dm:@%'")
        rooms = {room for rooms in (await self.recorded()).values() for room in rooms}
        for room in rooms:
            await self._db.execute("DELETE FROM core_kv WHERE key = ?", (f"room_last:{room}",))

    def is_recorded_direct(self, room_id: str) -> bool:
        """Whether ``room_id`` is in the cached ``m.direct`` (False before it was read)."""
        return any(room_id in rooms for rooms in (self._m_direct or {}).values())

    def _account_data_path(self) -> str:
        return f"/_matrix/client/v3/user/{quote(self.user_id)}/account_data/m.direct"

    async def recorded(self) -> dict[str, list[str]]:
        """The bot's ``m.direct``: person → rooms. Only this process writes it, so it is read
        from the homeserver once."""
        if self._m_direct is None:
            try:
                data = await self._api.request("GET", self._account_data_path())
            except TransportError as exc:
                if exc.errcode != "M_NOT_FOUND":
                    raise
                data = {}
            self._m_direct = {
                str(person): [str(r) for r in rooms]
                for person, rooms in data.items()
                if isinstance(rooms, list)
            }
        return self._m_direct

    async def _record(self, person: str, room_id: str) -> None:
        self._not_direct.pop(room_id, None)
        direct = await self.recorded()
        if room_id in direct.get(person, []):
            return
        direct.setdefault(person, []).append(room_id)
        await self._api.request("PUT", self._account_data_path(), direct)

    async def _unrecord(self, room_id: str, person: str | None = None) -> int:
        direct = await self.recorded()
        changed = 0
        for who, rooms in list(direct.items()):
            if (person is None or who == person) and room_id in rooms:
                rooms.remove(room_id)
                changed += 1
            if not rooms:
                direct.pop(who)
        if changed:
            await self._api.request("PUT", self._account_data_path(), direct)
        return changed

    async def person_of(self, room_id: str) -> str | None:
        """Whom ``room_id`` is recorded as a DM with, if anyone."""
        for person, rooms in (await self.recorded()).items():
            if room_id in rooms:
                return person
        return None

    # -- the rule ------------------------------------------------------------------------------
    async def is_direct_with(self, room_id: str, person: str) -> bool:
        """True only when ``room_id`` passes the DM rule for ``person`` right now."""
        if person in self._not_direct.get(room_id, ()):
            return False
        recorded = room_id in (await self.recorded()).get(person, [])
        try:
            state = await self._api.request_list(f"/_matrix/client/v3/rooms/{quote(room_id)}/state")
        except TransportError:
            return False
        problem = dm_problem(state, self.user_id, person, True)
        if problem is None and not recorded:
            # Made before the bot kept m.direct (or its record was lost): the room's own
            # history must show it was made as a DM by one of the two, then it is recorded.
            if await self._made_as_dm(room_id, state, person):
                await self._record(person, room_id)
            else:
                problem = "the room was not made as a direct chat"
        if problem:
            log.info("%s is not a direct chat: %s", room_id, problem)
            if len(self._not_direct) >= NOT_DIRECT_CACHE:
                self._not_direct.clear()
            self._not_direct.setdefault(room_id, set()).add(person)
        return problem is None

    async def _made_as_dm(self, room_id: str, state: list[dict[str, Any]], person: str) -> bool:
        """Whether the person created the room and invited the bot with ``is_direct`` (as
        Element does): the bot's latest invite, found back through ``unsigned.replaces_state``.

        A room the bot created counts only while it is recorded: the bot records every DM it
        makes, so an unrecorded one was dropped on purpose (``!forget me``) and must not be
        taken up again from its history."""
        creator = next((e.get("sender") for e in state if e.get("type") == "m.room.create"), None)
        if creator != person:
            return False
        other = self.user_id
        event = next(
            (e for e in state if e.get("type") == "m.room.member" and e.get("state_key") == other),
            None,
        )
        for _ in range(MEMBER_HISTORY_STEPS):
            if event is None:
                return False
            content = event.get("content") if isinstance(event.get("content"), dict) else {}
            if content and content.get("membership") == "invite":
                return content.get("is_direct") is True and event.get("sender") == creator
            previous = (event.get("unsigned") or {}).get("replaces_state")
            if not isinstance(previous, str):
                return False
            try:
                event = await self._api.request(
                    "GET",
                    f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(previous)}",
                )
            except TransportError:
                return False
        return False

    async def direct_room(self, person: str) -> str:
        """``person``'s DM with the bot: the last one used, another recorded one, or a new one.
        Every candidate is checked against the rule first; none is ever adopted unrecorded."""
        key = self._saved_key(person)
        saved = await self._db.kv_get(key)
        recorded = list((await self.recorded()).get(person, []))
        # A saved room not in the record (from before m.direct was kept) is checked like any
        # other: only its own history can make it a DM.
        candidates = ([saved] if saved else []) + [r for r in reversed(recorded) if r != saved]
        for candidate in candidates:
            if await self.is_direct_with(candidate, person):
                if candidate != saved:
                    await self._db.kv_set(key, candidate)
                return candidate
        pending_key = "pending_" + key
        pending = await self._db.kv_get(pending_key)
        if pending is not None:
            orphan = await self._made_before_a_crash(person, int(pending), set(candidates))
            if orphan is not None:
                if self._crypto is not None:
                    self._crypto.made(orphan)
                await self._record(person, orphan)
                await self._db.kv_set(key, orphan)
                await self._db.execute("DELETE FROM core_kv WHERE key = ?", (pending_key,))
                return orphan
        # Noted before asking (createRoom has no transaction id): a crash between the room's
        # creation and its record must not leave the person a second, empty invitation.
        await self._db.kv_set(pending_key, str(int(time.time() * 1000)))
        encrypt = self._crypto is not None and await self._crypto.can_encrypt_for(person)
        response = await self._api.retry(
            "create direct room",
            lambda: self._client.room_create(
                is_direct=True,
                invite=[person],
                preset=RoomPreset.trusted_private_chat,
                initial_state=[dict(ENCRYPTION_STATE)] if encrypt else (),
            ),
        )
        if isinstance(response, RoomCreateError):
            # No user id in the message: it reaches the logs.
            raise TransportError(f"could not open a direct chat: {response.message}")
        if self._crypto is not None:
            self._crypto.made(response.room_id)
        failpoints.hit("dm-created")  # made on the homeserver, not yet recorded
        await self._record(person, response.room_id)
        await self._db.kv_set(key, response.room_id)
        await self._db.execute("DELETE FROM core_kv WHERE key = ?", (pending_key,))
        return response.room_id

    async def _made_before_a_crash(self, person: str, noted_ms: int, seen: set[str]) -> str | None:
        """The DM the bot was making for ``person`` when it stopped, if the homeserver made it:
        a room the bot created (no earlier than the attempt was noted) whose only members are
        the two of them. Rooms left unrecorded on purpose (``!forget me``) are older."""
        try:
            joined = await self._api.request("GET", "/_matrix/client/v3/joined_rooms")
        except TransportError:
            return None
        recorded = {r for rooms in (await self.recorded()).values() for r in rooms}
        for room_id in joined.get("joined_rooms") or []:
            if not isinstance(room_id, str) or room_id in recorded or room_id in seen:
                continue
            path = f"/_matrix/client/v3/rooms/{quote(room_id)}/state"
            try:
                state = await self._api.request_list(path)
            except TransportError:
                continue
            create = next((e for e in state if e.get("type") == "m.room.create"), {})
            made = create.get("origin_server_ts")
            if create.get("sender") != self.user_id or not isinstance(made, int):
                continue
            if (
                made >= noted_ms - PENDING_SLACK_MS
                and dm_problem(state, self.user_id, person, True) is None
            ):
                log.info("%s: a direct chat made before a stop, taken up", room_id)
                return room_id
        return None

    async def known_room(self, person: str) -> str | None:
        """The DM last used with ``person`` (for their data export), if any."""
        return await self._db.kv_get(self._saved_key(person))

    async def forget(self, person: str) -> int:
        """Drop every record of ``person``'s direct chats; returns how many there were."""
        removed = await self._db.execute_rowcount(
            "DELETE FROM core_kv WHERE key IN (?, ?)", (self._saved_key(person), f"dm:{person}")
        )
        await self._db.execute(
            "DELETE FROM core_kv WHERE key = ?", ("pending_" + self._saved_key(person),)
        )
        direct = await self.recorded()
        if direct.pop(person, None) is not None:
            removed += 1
            await self._api.request("PUT", self._account_data_path(), direct)
        return removed

    # -- invites and membership ----------------------------------------------------------------
    def note_invite(self, invite: Invite) -> None:
        """Remember an ``is_direct`` invite until we join (nio drops the invite's stripped
        ``m.room.create``, and it is the inviting server's word anyway: checked at the join)."""
        if invite.is_direct and invite.inviter and invite.inviter != self.user_id:
            self._invited[invite.room_id] = invite
        else:
            self._invited.pop(invite.room_id, None)

    async def joined(self, room_id: str) -> None:
        """After joining: a room whose creator invited us to it as a DM is recorded as
        theirs. An ``is_direct`` invite from anyone else records nothing."""
        invite = self._invited.pop(room_id, None)
        if invite is None:
            return
        state = await self._api.request_list(f"/_matrix/client/v3/rooms/{quote(room_id)}/state")
        for raw in state:
            if raw.get("type") == "m.room.create" and raw.get("state_key") == "":
                content = raw.get("content") if isinstance(raw.get("content"), dict) else {}
                extra = (content or {}).get("additional_creators") or []
                # trusted_private_chat in room version 12 makes the invitees creators too
                others = [c for c in extra if c not in (invite.inviter, self.user_id)]
                if raw.get("sender") == invite.inviter and not others:
                    await self._record(invite.inviter, room_id)

    async def left(self, room_id: str) -> None:
        await self._unrecord(room_id)

    async def watch(
        self,
        events: list[Event],
        send: Callable[[str, Message, str], Awaitable[str]],
        leave: Callable[[str], Awaitable[None]],
    ) -> None:
        """A recorded DM that a third person is invited to or joins, or that is made public,
        is no longer private: say so there, leave it and forget it."""
        for event in events:
            if event.state_key is not None:  # membership, join rules, creators: ask again
                self._not_direct.pop(event.room_id, None)
        for event in events:
            if event.kind is EventKind.MEMBERSHIP:
                if event.membership not in ("invite", "join") or event.state_key == self.user_id:
                    continue
            elif (
                event.type != "m.room.join_rules"
                or event.state_key != ""  # a message that only carries the type is no rule
                or event.content.get("join_rule") == "invite"
            ):
                continue
            person = await self.person_of(event.room_id)
            if person is None or (event.kind is EventKind.MEMBERSHIP and event.state_key == person):
                continue
            log.info("%s is no longer a direct chat; leaving it", event.room_id)
            # Goodbye and leave first, forget last: replayed after a crash, this runs again
            # (the goodbye keeps its transaction id, so it is said once).
            try:
                await send(event.room_id, Message(NO_LONGER_PRIVATE), f"cbdm.{event.event_id}")
            except TransportError as exc:
                log.warning("could not say goodbye in %s: %s", event.room_id, exc)
            await leave(event.room_id)
            await self._unrecord(event.room_id)
            key = self._saved_key(person)
            if await self._db.kv_get(key) == event.room_id:
                await self._db.execute("DELETE FROM core_kv WHERE key = ?", (key,))
