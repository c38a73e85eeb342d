"""Integration fixtures come from civicbot's own pytest plugin (``civicbot.testing.pytest_plugin``,
registered under ``pytest11``): one real Synapse on loopback per session (per xdist worker), real
residents speaking raw client-server HTTP, and the bot as a real ``civicbot run`` subprocess.
This file adds only what is this repository's: every bot also loads the failing test plugin in
``tests/support``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from civicbot.testing import pytest_plugin
from civicbot.testing.pytest_plugin import (
    PASSWORD,
    encrypted_room,
    is_for,
    is_notice_from,
    reply_target,
    room_with_bot,
    unique,
)

REPO = Path(__file__).resolve().parents[2]
OPTIONS: dict[str, Any] = {
    "extra_plugins": ["boom_plugin:BoomPlugin"],
    "pythonpath": [str(REPO / "tests" / "support")],
}

__all__ = [
    "PASSWORD",
    "BotProcess",
    "agreed_start",
    "encrypted_room",
    "is_for",
    "is_notice_from",
    "reply_target",
    "room_with_bot",
    "unique",
]

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def civicbot_bot_options() -> dict[str, Any]:
    return OPTIONS


class BotProcess(pytest_plugin.BotProcess):
    """The kit's bot process with this repository's test plugin, for tests that make one
    themselves."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **{**OPTIONS, **kwargs})


def agreed_start(body: str, now: datetime, zone: str = "Europe/London") -> datetime:
    """The start of a meeting fixed for today or tomorrow, read off the bot's "is fixed" reply
    ("… Sun 6 Dec 19:03–20:03 Europe/Warsaw", or "… 23:30 – Mon 7 Dec 00:30 …" when it ends
    after midnight): a relative time is rounded to the minute, so the test cannot know it in
    advance."""
    found = re.search(r"(\d\d):(\d\d)\s*–", body)
    assert found, body
    local = now.astimezone(ZoneInfo(zone))
    start = local.replace(hour=int(found[1]), minute=int(found[2]), second=0, microsecond=0)
    if start < local - timedelta(hours=1):
        start += timedelta(days=1)
    return start.astimezone(UTC)
