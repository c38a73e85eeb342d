"""Helpers shared by the meetings plugin tests: the real bot with meetings and help loaded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import icalendar
from civicbot_plugins.help.plugin import HelpPlugin
from civicbot_plugins.meetings.plugin import MeetingsPlugin

from civicbot.scheduling.clock import FakeClock
from civicbot.testing.harness import BotHarness
from civicbot.transport.fake import Sent

START = "org.matrix.msc3381.poll.start"
RESPONSE = "org.matrix.msc3381.poll.response"
END = "org.matrix.msc3381.poll.end"
ANN, BOB, CAT = "@ann:test", "@bob:test", "@cat:test"


@asynccontextmanager
async def meetings_harness(
    tmp_path: Path, clock: FakeClock | None = None, **settings: Any
) -> AsyncIterator[BotHarness]:
    # The core's flood limits are tested elsewhere; here they would only get in the way.
    settings.setdefault("limits", {"person_burst": 0, "room_burst": 0, "everywhere_burst": 0})
    harness = await BotHarness.start(
        tmp_path,
        {"meetings": MeetingsPlugin, "help": HelpPlugin},
        clock=clock or FakeClock(),
        **settings,
    )
    harness.holder = [harness]  # type: ignore[attr-defined]
    try:
        yield harness
    finally:
        await harness.holder[-1].close()  # type: ignore[attr-defined]


async def restart(h: BotHarness) -> BotHarness:
    fresh = await h.restart()
    fresh.holder = h.holder  # type: ignore[attr-defined]
    fresh.holder.append(fresh)  # type: ignore[attr-defined]
    return fresh


async def ask(h: BotHarness, room: str, who: str, text: str) -> str:
    """Say ``text``; return the bot's first new message in ``room`` that is neither a table
    edit nor a file: the answer a resident reads."""
    before = len(h.transport.sent)
    await h.say(room, who, text)
    for sent in h.transport.sent[before:]:
        content = sent.content
        if sent.room_id != room or sent.type != "m.room.message":
            continue
        if content.get("msgtype") == "m.file" or "m.new_content" in content:
            continue
        return str(content.get("body", ""))
    return ""


def sent_of(h: BotHarness, event_type: str, room: str | None = None) -> list[Sent]:
    return [s for s in h.transport.sent if s.type == event_type and room in (None, s.room_id)]


def files(h: BotHarness, room: str | None = None) -> list[Sent]:
    return [s for s in sent_of(h, "m.room.message", room) if s.content.get("msgtype") == "m.file"]


def last_calendar(h: BotHarness, room: str | None = None) -> icalendar.Calendar:
    return icalendar.Calendar.from_ical(files(h, room)[-1].content["_data"])


def element_tap(start_id: str, *answers: str) -> dict[str, Any]:
    """Exactly what Element Web sends when someone taps answers of a poll."""
    return {
        "m.relates_to": {"rel_type": "m.reference", "event_id": start_id},
        RESPONSE: {"answers": list(answers)},
    }


def reminders_in(h: BotHarness, room: str) -> list[str]:
    return [t for t in h.texts(room) if t.startswith("⏰")]
