"""Reading a sync response: invites for the bot, timelines without history, gaps paged back.

The loop itself is :meth:`civicbot.transport.matrix.MatrixTransport.run`; this module turns one
response into the list of events the core handles and records where the next sync starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import ClientResponse
from nio import AsyncClient, MegolmEvent, SyncResponse

from civicbot.core.events import Event, EventKind
from civicbot.storage.database import Database
from civicbot.transport.http import HomeserverApi

log = logging.getLogger("civicbot.transport.matrix")

SYNC_TIMEOUT_MS = 30_000
GAP_PAGE_LIMIT = 100
GAP_MAX_EVENTS = 5_000
LATE_EVENT_ALLOWANCE_MS = 10 * 60 * 1000  # federated events may arrive this much out of order

# A filter that keeps everything a handler may need and drops what the bot never reads; a
# generous timeline limit makes gaps (limited=True) rare, and paging fills those that remain.
SYNC_FILTER: dict[str, Any] = {
    "presence": {"types": []},
    "account_data": {"types": []},
    "room": {
        "timeline": {"limit": 100},
        "state": {"lazy_load_members": True},
        "ephemeral": {"types": []},
        "account_data": {"types": []},
    },
}
FIRST_SYNC_FILTER: dict[str, Any] = {
    **SYNC_FILTER,
    "room": {**SYNC_FILTER["room"], "timeline": {"limit": 1}},
}


class SyncClient(AsyncClient):
    """nio's client, reading each sync answer into events off the event loop.

    nio builds its objects for every event of a sync in one go: for a first sync of 2,000 rooms
    that was 0.4 s (2.1 s before its schemas were compiled, :mod:`civicbot.transport.schemas`)
    in which the loop answered nobody. Building them is a pure function of the answer, so it
    runs in a thread of its own, which gives the loop its turn every few milliseconds; everything
    that changes the client's state (rooms, keys) still happens on the loop, as in nio."""

    async def create_matrix_response(
        self,
        response_class: type,
        transport_response: ClientResponse,
        data: tuple[Any, ...] | None = None,
        save_to: Any = None,
    ) -> Any:
        if response_class is not SyncResponse:
            return await super().create_matrix_response(
                response_class, transport_response, data, save_to
            )
        parsed = await self.parse_body(transport_response)
        response = await asyncio.get_running_loop().run_in_executor(
            _SYNC_READER, _read_sync, parsed
        )
        response.transport_response = transport_response
        return response


# A thread of its own: the loop's default pool also runs date parsing, which must not hold a
# sync (and with it every room) back.
_SYNC_READER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="civicbot-sync")


def _read_sync(parsed: dict[str, Any]) -> Any:
    return SyncResponse.from_dict(parsed)


@dataclass(frozen=True, slots=True)
class Invite:
    """An invite for the bot: who sent it and whether it asks for a direct chat."""

    room_id: str
    inviter: str
    is_direct: bool


Decrypt = Callable[[dict[str, Any], str], "dict[str, Any] | MegolmEvent"]


def _no_decryption(raw: dict[str, Any], room_id: str) -> dict[str, Any]:
    return raw


@dataclass(slots=True)
class Batch:
    """One sync response read: the events for the core, and the encrypted ones we hold no
    key for (yet), set aside instead of being handed on as meaningless ``OTHER`` events."""

    events: list[Event] = field(default_factory=list)
    undecryptable: list[MegolmEvent] = field(default_factory=list)


class SyncReader:
    """Turns sync responses into events, paging back over gaps, for one bot account.

    nio has decrypted the timeline already (what it could not is still a ``MegolmEvent``);
    events paged back over a gap come over plain HTTP and go through ``decrypt``."""

    def __init__(
        self, user_id: str, db: Database, api: HomeserverApi, decrypt: Decrypt = _no_decryption
    ):
        self.user_id = user_id
        self._db = db
        self._api = api
        self._decrypt = decrypt
        # Set by the transport: which rooms are private (a DM, or any room of two), and the
        # installation's keyed hash. A private room's mark names neither the room nor the
        # event in clear and carries no time (see :meth:`save_position`).
        self.private_room: Callable[[str], bool] = lambda room_id: False
        self.keyed_hash: Callable[[str], str] | None = None
        # Each room's newest event read so far: the mark a gap pages back to, kept here too
        # because the saved one trails behind while earlier batches are still being handled.
        self._marks: dict[str, str] = {}

    def note(self, events: list[Event]) -> None:
        """Remember each room's newest event of a batch that was read (not yet handled)."""
        for event in events:
            if event.event_id:
                self._marks[event.room_id] = f"{event.ts}|{event.event_id}"

    async def collect(self, response: SyncResponse) -> Batch:
        """Every event of the batch to hand to the core, invites first."""
        batch = Batch([self.invite_event(*found) for found in self.invites(response)])
        for room_id, info in response.rooms.join.items():
            items: list[dict[str, Any] | MegolmEvent] = [
                e if isinstance(e, MegolmEvent) else e.source
                for e in info.timeline.events
                if getattr(e, "source", None)
            ]
            joined_at = self.own_join([_source(item) for item in items])
            if joined_at is not None:
                # Just joined: what came before our join is the room's history, not for us.
                items = items[joined_at:]
            elif info.timeline.limited and info.timeline.prev_batch:
                older = await self._fill_gap(room_id, info.timeline.prev_batch)
                items = [self._decrypt(raw, room_id) for raw in older] + items
            for item in items:
                if isinstance(item, MegolmEvent):
                    item.room_id = room_id
                    batch.undecryptable.append(item)
                else:
                    batch.events.append(Event.from_raw(item, room_id))
        return batch

    def own_join(self, raws: list[dict[str, Any]]) -> int | None:
        """Index of the bot's own join in a timeline, if it joined during this batch."""
        for index, raw in enumerate(raws):
            if (
                raw.get("type") == "m.room.member"
                and raw.get("state_key") == self.user_id
                and (raw.get("content") or {}).get("membership") == "join"
            ):
                prev = ((raw.get("unsigned") or {}).get("prev_content") or {}).get("membership")
                if prev != "join":
                    return index
        return None

    def invites(self, response: SyncResponse) -> list[tuple[Invite, dict[str, Any], int]]:
        """Invites addressed to the bot itself (state_key is our id): each with its content
        and timestamp."""
        found = []
        for room_id, info in response.rooms.invite.items():
            mine = None
            for state in info.invite_state:
                raw = getattr(state, "source", None) or {}
                # nio keeps invite_state content on the parsed event, not in .source
                content = raw.get("content") or getattr(state, "content", None) or {}
                if (
                    raw.get("type") == "m.room.member"
                    and raw.get("state_key") == self.user_id
                    and content.get("membership") == "invite"
                ):
                    mine = (raw, content)
            if mine is not None:
                raw, content = mine
                invite = Invite(
                    room_id, str(raw.get("sender", "")), content.get("is_direct") is True
                )
                ts = raw.get("origin_server_ts")
                found.append((invite, dict(content), ts if isinstance(ts, int) else 0))
        return found

    def invite_event(self, invite: Invite, content: dict[str, Any], ts: int) -> Event:
        """The INVITE event the core handles for one invite."""
        return Event(
            event_id="",
            room_id=invite.room_id,
            sender=invite.inviter,
            kind=EventKind.INVITE,
            type="m.room.member",
            ts=ts,
            content=content,
            state_key=self.user_id,
        )

    async def save_position(self, token: str, events: list[Event]) -> None:
        """Store where to sync from next and, per room, the newest event seen: the mark a
        later gap pages back to. One statement, as it runs after every sync.

        A private room's mark is kept under a keyed hash of the room, holding a keyed hash of
        the event and no time: a copy of the files must not say when a person wrote to the bot
        (a private need's time would name them), and the mark still lets a gap stop at it."""
        rows = [("sync_token", token)]
        newest: dict[str, Event] = {}
        for event in events:
            if event.event_id:
                newest[event.room_id] = event
        clear: list[str] = []
        for room, e in newest.items():
            if self.keyed_hash is not None and self.private_room(room):
                rows.append((self._private_mark_key(room), f"0|~{self._event_mark(e.event_id)}"))
                clear.append(f"room_last:{room}")
            else:
                rows.append((f"room_last:{room}", f"{e.ts}|{e.event_id}"))
        marks = ", ".join("(?, ?)" for _ in rows)
        await self._db.execute(
            f"INSERT INTO core_kv (key, value) VALUES {marks} "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [value for row in rows for value in row],
        )
        if clear:  # a mark from before the room was known as private
            holes = ", ".join("?" for _ in clear)
            await self._db.execute(f"DELETE FROM core_kv WHERE key IN ({holes})", clear)

    def _private_mark_key(self, room_id: str) -> str:
        assert self.keyed_hash is not None
        return "room_last:~" + self.keyed_hash(f"sync-room:{room_id}")

    def _event_mark(self, event_id: str) -> str:
        assert self.keyed_hash is not None
        return self.keyed_hash(f"sync-event:{event_id}")

    async def _mark(self, room_id: str) -> tuple[int, str]:
        """The room's mark: (its time, or 0 when it has none; the event id, or ``~hash``)."""
        mark = None
        if self.keyed_hash is not None:
            mark = await self._db.kv_get(self._private_mark_key(room_id))
        if mark is None:
            mark = await self._db.kv_get(f"room_last:{room_id}") or "0|"
        ts_text, _, last_id = mark.partition("|")
        return int(ts_text), last_id

    async def _fill_gap(self, room_id: str, prev_batch: str) -> list[dict[str, Any]]:
        """Page back over a gap to the newest event we saw in this room before it (or one we
        handled, or our own join), so messages sent while we were away are not skipped.

        Federated events can arrive late with older timestamps, so time alone is only a
        fallback: we stop on time when we pass well below the last event we saw."""
        # The newest event read (kept in memory: the saved mark trails behind while earlier
        # batches are still being handled), else the saved mark.
        in_memory = self._marks.get(room_id)
        if in_memory:
            ts_text, _, last_id = in_memory.partition("|")
            last_ts = int(ts_text)
        else:
            last_ts, last_id = await self._mark(room_id)
        hashed = last_id.startswith("~")
        # A private room's mark has no time: only its event (or a handled one, or our join)
        # ends the page-back.
        floor_ts = last_ts - LATE_EVENT_ALLOWANCE_MS if last_ts else -1
        older: list[dict[str, Any]] = []
        token: str | None = prev_batch
        while token and len(older) < GAP_MAX_EVENTS:
            path = (
                f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b"
                f"&limit={GAP_PAGE_LIMIT}&from={quote(token)}"
            )
            page = await self._api.request("GET", path)
            chunk = page.get("chunk") or []
            reached = False
            for raw in chunk:
                event_id = str(raw.get("event_id") or "")
                if (
                    event_id == last_id
                    or (hashed and event_id and f"~{self._event_mark(event_id)}" == last_id)
                    or int(raw.get("origin_server_ts") or 0) < floor_ts
                    or self.own_join([raw]) is not None
                    or await self._known(raw.get("event_id", ""))
                ):
                    reached = True
                    break
                older.append(raw)
            if reached or not chunk:
                break
            token = page.get("end")
        if len(older) >= GAP_MAX_EVENTS:
            log.warning(
                "a gap in %s is longer than %d events; older messages were not read",
                room_id,
                GAP_MAX_EVENTS,
            )
        log.info("filled a gap of %d events in %s", len(older), room_id)
        return list(reversed(older))

    async def _known(self, event_id: str) -> bool:
        return bool(
            await self._db.fetchval("SELECT 1 FROM core_handled WHERE event_id = ?", (event_id,))
        )


def _source(item: dict[str, Any] | MegolmEvent) -> dict[str, Any]:
    return item.source if isinstance(item, MegolmEvent) else item


class PositionKeeper:
    """Saves sync positions in batch order, each once its batch has been handled.

    The sync loop does not wait for the core: it hands a batch on and syncs again. What it must
    not do is store a position past an event that is still waiting in a room's queue, or a
    crash would lose it. So every batch's position waits here for its own completion and for
    every batch before it; ``after`` (the held encrypted events released into the batch) runs
    just before the save."""

    def __init__(self, reader: SyncReader):
        self._reader = reader
        self._batches: asyncio.Queue[
            tuple[Awaitable[None], str, list[Event], Callable[[], Awaitable[None]] | None] | None
        ] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def add(
        self,
        done: Awaitable[None],
        token: str,
        events: list[Event],
        after: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._save_in_order())
        self._batches.put_nowait((done, token, events, after))

    async def _save_in_order(self) -> None:
        while (item := await self._batches.get()) is not None:
            done, token, events, after = item
            await done
            if after is not None:
                await after()
            await self._reader.save_position(token, events)

    async def finish(self) -> None:
        """Wait until every batch handed on is handled and its position saved."""
        if self._task is None:
            return
        self._batches.put_nowait(None)
        task, self._task = self._task, None
        await task
