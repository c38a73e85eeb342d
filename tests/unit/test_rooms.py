"""Per-room queues: order within a room, no waiting across rooms, bounded memory, and sync
positions saved only behind what is handled."""

from __future__ import annotations

import asyncio

from civicbot.core.events import Event, EventKind
from civicbot.core.rooms import RoomQueues
from civicbot.transport.sync import PositionKeeper


def message(room: str, n: int) -> Event:
    return Event(
        event_id=f"${room}{n}",
        room_id=room,
        sender="@a:hs",
        kind=EventKind.MESSAGE,
        type="m.room.message",
        ts=n,
        content={"msgtype": "m.text", "body": str(n)},
    )


class Blocking:
    """A handler that records what it handles and holds back any room it is told to."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    async def __call__(self, event: Event) -> None:
        gate = self.gates.get(event.room_id)
        if gate is not None:
            await gate.wait()
        self.handled.append(event.event_id)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_stuck_room_does_not_hold_back_another_and_each_room_keeps_its_order() -> None:
    handler = Blocking()
    handler.gates["!busy"] = asyncio.Event()
    queues = RoomQueues(handler)
    first = await queues.submit([message("!busy", 1), message("!quiet", 1), message("!busy", 2)])
    second = await queues.submit([message("!quiet", 2), message("!busy", 3)])
    await settle()
    assert handler.handled == ["$!quiet1", "$!quiet2"]  # the later batch's quiet room too
    assert not first.done() and not second.done()
    handler.gates["!busy"].set()
    await first
    await second
    busy = [e for e in handler.handled if e.startswith("$!busy")]
    assert busy == ["$!busy1", "$!busy2", "$!busy3"]
    assert queues.pending == 0


async def test_a_full_room_queue_holds_the_sync_loop_back() -> None:
    handler = Blocking()
    handler.gates["!flood"] = asyncio.Event()
    queues = RoomQueues(handler, room_limit=3, total_limit=100)
    await queues.submit([message("!flood", n) for n in range(3)])
    more = asyncio.create_task(queues.submit([message("!flood", 3)]))
    await settle()
    assert not more.done() and queues.pending == 3  # memory stays bounded
    handler.gates["!flood"].set()
    await (await more)
    assert handler.handled == [f"$!flood{n}" for n in range(4)]


async def test_too_many_events_in_flight_hold_the_sync_loop_back() -> None:
    handler = Blocking()
    for room in ("!a", "!b", "!c"):
        handler.gates[room] = asyncio.Event()
    queues = RoomQueues(handler, room_limit=100, total_limit=2)
    await queues.submit([message("!a", 1), message("!b", 1)])
    more = asyncio.create_task(queues.submit([message("!c", 1)]))
    await settle()
    assert not more.done()
    handler.gates["!a"].set()
    await settle()
    assert more.done()
    handler.gates["!b"].set()
    handler.gates["!c"].set()
    await more.result()
    assert sorted(handler.handled) == ["$!a1", "$!b1", "$!c1"]


class Positions:
    def __init__(self) -> None:
        self.saved: list[str] = []

    async def save_position(self, token: str, events: list[Event]) -> None:
        self.saved.append(token)


async def test_a_position_is_saved_only_once_its_batch_and_every_earlier_one_is_handled() -> None:
    handler = Blocking()
    handler.gates["!slow"] = asyncio.Event()
    queues = RoomQueues(handler)
    positions = Positions()
    keeper = PositionKeeper(positions)  # type: ignore[arg-type]
    slow = [message("!slow", 1)]
    keeper.add(await queues.submit(slow), "t1", slow)
    fast = [message("!fast", 1)]
    keeper.add(await queues.submit(fast), "t2", fast)
    await settle()
    assert handler.handled == ["$!fast1"]
    assert positions.saved == []  # t2 is handled, but saving it would skip the slow room's event
    handler.gates["!slow"].set()
    await keeper.finish()
    assert positions.saved == ["t1", "t2"]


class Fatal(BaseException):
    pass


async def test_a_fatal_error_reaches_whoever_awaits_the_batch_and_the_room_goes_on() -> None:
    seen: list[str] = []

    async def handle(event: Event) -> None:
        if event.event_id == "$!r1":
            raise Fatal
        seen.append(event.event_id)

    queues = RoomQueues(handle)
    done = await queues.submit([message("!r", 1)])
    try:
        await done
    except Fatal:
        pass
    else:
        raise AssertionError("the batch did not report the fatal error")
    await (await queues.submit([message("!r", 2)]))
    assert seen == ["$!r2"] and queues.pending == 0
