"""Helpers shared by the consultations tests: a harness with a councillor already granted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from civicbot_plugins.admin.plugin import AdminPlugin
from civicbot_plugins.consultations.plugin import ConsultationsPlugin
from civicbot_plugins.help.plugin import HelpPlugin
from civicbot_plugins.privacy.plugin import PrivacyPlugin

from civicbot.scheduling.clock import FakeClock
from civicbot.testing.harness import MODERATOR, BotHarness
from civicbot.transport.fake import Sent

CLLR, ANN, BOB, CAT = "@cllr:test", "@ann:test", "@bob:test", "@cat:test"
PEOPLE = [CLLR, ANN, BOB, CAT]
PARK = (
    "!consult Park improvements\nWhat should the grant pay for?\ncloses friday 18:00\n{extra}"
    "text: What would make the park better?\n"
    "one: Which comes first? Benches / Lights / Trees\n"
    "several: Which days do you visit? Weekdays / Saturday / Sunday\n"
    "statement: The park should close at dusk"
)


def park(extra: str = "") -> str:
    return PARK.format(extra=f"{extra}\n" if extra else "")


@asynccontextmanager
async def consult_harness(tmp_path: Path, **settings: Any) -> AsyncIterator[BotHarness]:
    """The plugin with admin (for !role grant), help and privacy; flood limits out of the way
    (tests/unit/plugins/test_admin_safety.py covers them)."""
    settings.setdefault("limits", {"person_burst": 0, "room_burst": 0, "everywhere_burst": 0})
    harness = await BotHarness.start(
        tmp_path,
        {
            "consultations": ConsultationsPlugin,
            "admin": AdminPlugin,
            "help": HelpPlugin,
            "privacy": PrivacyPlugin,
        },
        clock=FakeClock(),
        **settings,
    )
    holder = [harness]
    harness.holder = holder  # type: ignore[attr-defined]
    try:
        yield harness
    finally:
        await holder[-1].close()


async def restart(h: BotHarness) -> BotHarness:
    fresh = await h.restart()
    fresh.holder = h.holder  # type: ignore[attr-defined]
    fresh.holder.append(fresh)  # type: ignore[attr-defined]
    return fresh


async def council_room(h: BotHarness) -> str:
    room = h.room(members=PEOPLE)
    await h.say(room, MODERATOR, f"!role grant {CLLR} councillor")
    return room


async def ask(h: BotHarness, room: str, who: str, text: str) -> str:
    """Say something and return all the bot answered (anywhere), joined."""
    before = len(h.transport.sent)
    await h.say(room, who, text)
    return "\n".join(s.body for s in h.transport.sent[before:])


def sent_to(h: BotHarness, room: str) -> list[Sent]:
    return [s for s in h.transport.sent if s.room_id == room]


def plugin(h: BotHarness) -> ConsultationsPlugin:
    found = h.bot.plugins["consultations"]
    assert isinstance(found, ConsultationsPlugin)
    return found
