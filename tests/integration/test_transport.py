"""The Matrix transport on its own against Synapse: the places where a mistake leaks privacy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from civicbot.config import MatrixSettings
from civicbot.storage.database import Database
from civicbot.transport.matrix import FIRST_SYNC_TIMEOUTS, MatrixTransport
from civicbot.transport.undecryptable import Released
from tests.integration.conftest import PASSWORD, unique


async def test_a_group_room_is_never_taken_for_a_direct_chat(synapse, residents, tmp_path):
    """With lazy-loaded members nio sees only the people who spoke; after a restart a room of
    five where only Ann has spoken looked like a DM with her, and her data export went there."""
    ann, bob, cat = await residents("ann"), await residents("bob"), await residents("cat")
    bot_id = synapse.register(unique("civicbot"), PASSWORD)
    room = await bob.create_room(name="Neighbourhood", invite=[ann.user_id, cat.user_id, bot_id])
    await ann.join(room)
    await cat.join(room)
    db = await Database.open(tmp_path / "bot.sqlite3")
    transport = MatrixTransport(
        MatrixSettings(homeserver=synapse.url, user_id=bot_id, password=PASSWORD),
        tmp_path / "data",
        db,
    )
    try:
        await transport.login()
        await transport.join(room)

        async def handled() -> None:
            return None

        async def ignore(events: list) -> Awaitable[None]:
            return handled()  # a sink queues the batch and says when it is handled

        await transport._first_sync(ignore)  # a restarted bot: it has not seen the members
        await ann.send_text(room, "!mydata")
        await transport._sync_once(await db.kv_get("sync_token"))
        assert set(transport.client.rooms[room].users) == {ann.user_id, bot_id}

        direct = await transport.direct_room(ann.user_id)
        assert direct != room
        assert await transport.is_direct_with(direct, ann.user_id)
        assert not await transport.is_direct_with(room, ann.user_id)
        assert await transport.direct_room(ann.user_id) == direct  # remembered and re-checked

        # If the remembered room gains a third member it is no longer private.
        await ann.join(direct)
        await ann.invite(direct, cat.user_id)
        assert await transport.direct_room(ann.user_id) not in (direct, room)
    finally:
        await transport.close()
        await db.close()


async def _handled() -> None:
    return None


async def _run_until(
    transport: MatrixTransport, db: Database, sink: Any, done: asyncio.Event
) -> None:
    """Log in and sync into ``sink`` until it sets ``done``; then stop, and close it all."""
    try:
        await transport.login()
        running = asyncio.create_task(transport.run(sink))
        await asyncio.wait_for(done.wait(), 20)
        transport.request_stop()
        await asyncio.wait_for(running, 20)
    finally:
        await transport.close()
        await db.close()


async def test_a_restarted_bot_catches_up_without_waiting_for_news(synapse, tmp_path):
    """The first sync after a start fetches what came meanwhile and must answer at once: it
    long-polled 30 s when nothing had, and the plugins heard that they had caught up (late
    digests, overdue reminders) only then."""
    bot_id = synapse.register(unique("civicbot"), PASSWORD)
    settings = MatrixSettings(homeserver=synapse.url, user_id=bot_id, password=PASSWORD)
    db = await Database.open(tmp_path / "bot.sqlite3")
    first = MatrixTransport(settings, tmp_path / "data", db)
    try:
        await first.login()

        async def ignore(events: list) -> Awaitable[None]:
            return _handled()  # the core's sink answers with "all handled" to wait on

        await first._first_sync(ignore)  # the earlier run: a sync position is saved
    finally:
        await first.close()

    again = MatrixTransport(settings, tmp_path / "data", db)
    timeouts: list[int | None] = []
    real_sync = again.client.sync

    async def recorded(*args, **kwargs):
        timeouts.append(kwargs.get("timeout"))
        return await real_sync(*args, **kwargs)

    again.client.sync = recorded  # type: ignore[method-assign]
    caught_up = asyncio.Event()

    async def sink(events: list) -> Awaitable[None]:
        caught_up.set()
        return _handled()

    await _run_until(again, db, sink, caught_up)
    # Not the 30 s long-poll: a few milliseconds at most (each start's own, see the next test).
    assert timeouts[0] is not None and timeouts[0] < FIRST_SYNC_TIMEOUTS


async def test_a_start_soon_after_a_crash_reads_what_came_since(synapse, residents, tmp_path):
    """Synapse hands a sync request the answer it gave the same request (since, timeout,
    filter) within two minutes. A start after a crash syncs from where the crashed start did:
    it was handed that start's first answer, from before the messages sent since, and the core
    took it for the whole backlog. Plugins heard they had caught up before a replayed vote was
    read, and its voter was asked to vote again (a fresh-clone run of the secret ballot test)."""
    ann = await residents("ann")
    bot_id = synapse.register(unique("civicbot"), PASSWORD)
    room = await ann.create_room(name="Neighbourhood", invite=[bot_id])
    settings = MatrixSettings(homeserver=synapse.url, user_id=bot_id, password=PASSWORD)
    db = await Database.open(tmp_path / "bot.sqlite3")

    async def ignore(events: list) -> Awaitable[None]:
        return _handled()

    crashed = MatrixTransport(settings, tmp_path / "data", db)
    try:
        await crashed.login()
        await crashed.join(room)
        await crashed._first_sync(ignore)  # the first run: a sync position is saved
        position = await db.kv_get("sync_token")
        assert position is not None
        await ann.send_text(room, "!vote P-1 2")
        # The next start reads this in its first sync, and dies handling it: no position
        # past it is saved.
        await crashed._fresh_timeout()  # as run() does first
        answer = await crashed._sync_once(position)
        assert [e.body for e in answer.rooms.join[room].timeline.events if hasattr(e, "body")] == [
            "!vote P-1 2"
        ]
    finally:
        await crashed.close()
    assert await db.kv_get("sync_token") == position

    await ann.send_text(room, "!polls")  # while the bot was down
    again = MatrixTransport(settings, tmp_path / "data", db)
    first_batch: list[str] = []
    read = asyncio.Event()

    async def sink(events: list) -> Awaitable[None]:
        if not read.is_set():
            first_batch.extend(e.body for e in events if e.body)
            read.set()
        return _handled()

    # An encrypted message held when the bot stopped, whose key came meanwhile, is older than
    # the backlog: it goes to the core first, in the same first batch (on its own, the core
    # took it for the backlog and caught up before reading the rest).
    earlier = {
        "type": "m.room.message",
        "event_id": "$held",
        "sender": ann.user_id,
        "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": "!offers"},
    }

    real_start = again.e2e.start

    async def held_at_start() -> list[Released]:
        return [*await real_start(), Released(room, "$held", earlier)]

    let_go: list[str] = []

    async def handled(released: list[Released]) -> None:
        let_go.extend(r.event_id for r in released)

    again.e2e.start = held_at_start  # type: ignore[method-assign]
    again.e2e.handled = handled  # type: ignore[method-assign]
    await _run_until(again, db, sink, read)
    # The held message, the replay and what came since, in one batch; let go once handled.
    assert first_batch == ["!offers", "!vote P-1 2", "!polls"]
    assert let_go == ["$held"]
