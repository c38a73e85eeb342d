"""One busy room never delays another, and a crash mid-burst loses and repeats nothing.

Proved against a real Synapse with the real bot process; nothing here is timed: a stuck handler
(``!hold`` of the test plugin, hanging while a file exists) stands for a busy room."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.integration.conftest import is_notice_from, reply_target, room_with_bot


async def _replies(resident: Any, room: str, bot_id: str) -> list[str]:
    """The event ids the bot's notices in ``room`` answer, oldest first."""
    events = await resident.messages(room, limit=200)
    return [
        target
        for e in reversed(events)
        if is_notice_from(bot_id)(e) and (target := reply_target(e)) is not None
    ]


async def _wait_for_replies(
    resident: Any, room: str, bot_id: str, wanted: list[str], timeout: float = 90
) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = await _replies(resident, room, bot_id)
        if set(wanted) <= set(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


async def test_a_stuck_room_holds_back_no_other_and_a_sigkill_mid_burst_replays_in_order(
    residents, bots, tmp_path
):
    hold_file = tmp_path / "hold"
    hold_file.write_text("stuck")
    ann = await residents("ann")
    bob = await residents("bob")
    bot = await bots(env={"CIVICBOT_TEST_HOLD": str(hold_file)})
    busy = await room_with_bot(ann, bot)
    quiet = await room_with_bot(bob, bot)

    # The busy room: a handler that hangs, and a burst queued behind it.
    held = await ann.send_text(busy, "!hold")
    behind = [await ann.send_text(busy, "!ping") for i in range(5)]
    # The quiet room is answered all the same, every command, while the busy room is stuck.
    pings = [await bob.send_text(quiet, "!ping") for i in range(3)]
    answered = await _wait_for_replies(bob, quiet, bot.user_id, pings)
    assert answered == pings
    assert await _replies(ann, busy, bot.user_id) == []  # nothing overtook the stuck command

    # Crash mid-burst: the stuck command and everything behind it are not handled yet, so the
    # saved sync position must still be before them.
    bot.kill()
    hold_file.unlink()
    await bot.start()
    bob.mark()
    last = await bob.send_text(quiet, "!ping")
    wanted = [held, *behind]
    answered_busy = await _wait_for_replies(ann, busy, bot.user_id, wanted)
    assert answered_busy == wanted  # each once, in the order they were said
    answered_quiet = await _wait_for_replies(bob, quiet, bot.user_id, [*pings, last])
    assert answered_quiet == [*pings, last]  # the quiet room's replay answered nothing twice
    await ann.wait_for(busy, is_notice_from(bot.user_id, "Held and let go"))
