"""The Matrix transport on its own against Synapse: the places where a mistake leaks privacy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from civicbot.config import MatrixSettings
from civicbot.storage.database import Database
from civicbot.transport.matrix import MatrixTransport
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

    try:
        await again.login()
        running = asyncio.create_task(again.run(sink))
        await asyncio.wait_for(caught_up.wait(), 20)
        again.request_stop()
        await asyncio.wait_for(running, 20)
    finally:
        await again.close()
        await db.close()
    assert timeouts[0] == 0
