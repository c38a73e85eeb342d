"""Per-room queues: a room's events are handled in order, and rooms never wait for each other.

The sync loop hands every batch to :meth:`RoomQueues.submit`, which puts each event on its
room's queue and returns at once with a :class:`BatchDone` the transport awaits (in batch order)
before it saves that batch's sync position: the saved position is never past an event that is
not handled yet, so a crash replays it and ``core_handled`` drops what was done already.

Each room with work has one worker task, which ends when its queue is empty (a city of quiet
rooms holds no idle tasks). A slow handler, or the send pacer sleeping before a reply, delays
only its own room. Memory stays bounded under a flood: ``submit`` waits while a room's queue is
full or too many events are in flight altogether, which holds back the next ``/sync``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from civicbot.core.events import Event

log = logging.getLogger(__name__)

# Events waiting in one room, and in all rooms together, before the sync loop is held back.
ROOM_QUEUE_LIMIT = 1_000
TOTAL_QUEUE_LIMIT = 20_000


class BatchDone:
    """Completes when every event of one submitted batch has been handled."""

    __slots__ = ("_done", "_left")

    def __init__(self, count: int):
        self._left = count
        self._done = asyncio.get_running_loop().create_future()
        if count == 0:
            self._done.set_result(None)

    def _one_done(self) -> None:
        self._left -= 1
        if self._left == 0 and not self._done.done():
            self._done.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if not self._done.done():
            if isinstance(exc, asyncio.CancelledError):
                self._done.cancel()
            else:
                self._done.set_exception(exc)

    def done(self) -> bool:
        return self._done.done()

    def __await__(self) -> Generator[Any, None, None]:
        return asyncio.shield(self._done).__await__()


class RoomQueues:
    """One ordered queue and (while it has work) one worker per room."""

    def __init__(
        self,
        handle: Callable[[Event], Awaitable[None]],
        room_limit: int = ROOM_QUEUE_LIMIT,
        total_limit: int = TOTAL_QUEUE_LIMIT,
    ):
        self._handle = handle
        self._room_limit = room_limit
        self._total_limit = total_limit
        self._queues: dict[str, deque[tuple[Event, BatchDone]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._pending = 0
        self._room_free = asyncio.Condition()

    @property
    def pending(self) -> int:
        """Events submitted and not handled yet, in all rooms."""
        return self._pending

    async def submit(self, events: list[Event]) -> BatchDone:
        """Queue ``events`` (in order) on their rooms' queues; wait while the queues are full.
        Returns at once otherwise: await the result to know the batch is handled."""
        done = BatchDone(len(events))
        for event in events:
            room = event.room_id
            queue = self._queues.get(room)
            if queue is None:
                queue = self._queues[room] = deque()
            if len(queue) >= self._room_limit or self._pending >= self._total_limit:
                async with self._room_free:
                    await self._room_free.wait_for(functools.partial(self._has_room, queue))
                queue = self._queues.setdefault(room, queue)
            queue.append((event, done))
            self._pending += 1
            if room not in self._workers:
                self._workers[room] = asyncio.create_task(self._work(room, queue))
        return done

    def _has_room(self, queue: deque[tuple[Event, BatchDone]]) -> bool:
        return len(queue) < self._room_limit and self._pending < self._total_limit

    async def _work(self, room: str, queue: deque[tuple[Event, BatchDone]]) -> None:
        try:
            while queue:
                event, done = queue[0]
                try:
                    await self._handle(event)
                except Exception:  # the handler never raises; a worker must not die anyway
                    log.exception("handling %s in %s failed", event.event_id, room)
                except BaseException as exc:
                    # Cancelled, or the process is going down: whoever awaits this batch hears
                    # it (and saves no position past it); the rest of the queue stays queued.
                    queue.popleft()
                    self._pending -= 1
                    done._fail(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    return
                queue.popleft()
                self._pending -= 1
                done._one_done()
                if self._pending + 1 >= self._total_limit or len(queue) + 1 >= self._room_limit:
                    async with self._room_free:
                        self._room_free.notify_all()
        finally:
            del self._workers[room]
            if not queue and self._queues.get(room) is queue:
                del self._queues[room]

    async def drain(self) -> None:
        """Wait until every queued event has been handled."""
        while self._workers:
            await asyncio.gather(*list(self._workers.values()), return_exceptions=True)
