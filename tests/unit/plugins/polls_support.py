"""Helpers shared by the polls tests: a harness whose fake homeserver stamps the bot's events."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from civicbot_plugins.help.plugin import HelpPlugin
from civicbot_plugins.polls.plugin import PollsPlugin

from civicbot.scheduling.clock import FakeClock
from civicbot.testing.harness import BotHarness
from civicbot.transport.fake import Sent

START = "org.matrix.msc3381.poll.start"
RESPONSE = "org.matrix.msc3381.poll.response"
END = "org.matrix.msc3381.poll.end"
ANN, BOB, CAT, DAN = "@ann:test", "@bob:test", "@cat:test", "@dan:test"


@asynccontextmanager
async def polls_harness(tmp_path: Path, **settings: Any) -> AsyncIterator[BotHarness]:
    clock = FakeClock()
    # Without the admin plugin these tests ran with no flood limits; the core's stay out of
    # the way here so the tests keep testing polls (tests/unit/plugins/test_admin_safety.py
    # covers the limits).
    settings.setdefault("limits", {"person_burst": 0, "room_burst": 0, "everywhere_burst": 0})
    harness = await BotHarness.start(
        tmp_path,
        {"polls": PollsPlugin, "help": HelpPlugin},
        clock=clock,
        **settings,
    )
    holder = [harness]
    harness.holder = holder  # type: ignore[attr-defined]
    try:
        yield harness
    finally:
        await holder[-1].close()


async def restart(h: BotHarness) -> BotHarness:
    """Restart on the same database; the fixture closes whichever harness is current."""
    fresh = await h.restart()
    fresh.holder = h.holder  # type: ignore[attr-defined]
    fresh.holder.append(fresh)  # type: ignore[attr-defined]
    return fresh


def sent_of(h: BotHarness, event_type: str) -> list[Sent]:
    return [s for s in h.transport.sent if s.type == event_type]


def start_event(h: BotHarness, index: int = -1) -> Sent:
    return sent_of(h, START)[index]


def response(start_id: str, *answers: Any) -> dict[str, Any]:
    """Exactly what Element sends when someone taps an answer."""
    return {
        "m.relates_to": {"rel_type": "m.reference", "event_id": start_id},
        RESPONSE: {"answers": list(answers)},
    }


async def tap(h: BotHarness, room: str, who: str, start_id: str, *answers: Any):
    return await h.send(room, who, RESPONSE, response(start_id, *answers))


def dm_room(h: BotHarness, user: str) -> str:
    room_id = f"!dm-{user.strip('@').replace(':', '-')}:test"
    h.transport.add_room(room_id, [user], direct_for=user)
    return room_id


def secret_file(h: BotHarness) -> sqlite3.Connection:
    """The polls plugin's private store beside the main database (read as anyone on the disk
    could): secret voters and ballots, see civicbot/storage/private_store.py."""
    return sqlite3.connect(h.path / "private-polls.sqlite3")
