"""Rate limits and the demo, against a real Synapse."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote

from civicbot.testing.client import Resident
from tests.integration.conftest import (
    PASSWORD,
    is_notice_from,
    reply_target,
    room_with_bot,
    unique,
)


async def test_rate_limited_bot_answers_every_command_once(synapse, residents, bots):
    """Synapse's own limit for the bot: 1 message/s with a burst of 2. Eight quick commands
    hit 429s; each is answered exactly once, in order, after honouring retry-after."""
    ann = await residents("ann")
    bot = await bots()
    room = await room_with_bot(ann, bot)
    admin_id = synapse.register(unique("admin"), PASSWORD, admin=True)
    async with await Resident.login(synapse.url, admin_id, PASSWORD) as admin:
        await admin._request(
            "POST",
            f"/_synapse/admin/v1/users/{quote(bot.user_id)}/override_ratelimit",
            {"messages_per_second": 1, "burst_count": 2},
        )
    ann.mark()
    # "!help ping N" names no command, so each gets its own "I don't have" reply.
    asked = [await ann.send_text(room, f"!help ping {i}") for i in range(8)]
    deadline = time.monotonic() + 60
    replies: list[dict] = []
    while time.monotonic() < deadline:
        events = await ann.messages(room, limit=100)
        replies = [e for e in events if is_notice_from(bot.user_id)(e) and reply_target(e) in asked]
        if len(replies) >= len(asked):
            break
        await asyncio.sleep(1)
    answered = [reply_target(e) for e in replies]
    assert sorted(answered) == sorted(asked)  # every one, none twice
    assert "429" in bot.log_text() or "M_LIMIT_EXCEEDED" in bot.log_text()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_demo_runs_a_room_a_person_can_use(tmp_path):
    """`civicbot demo`: private Synapse, bot, resident and room; !ping answered; Ctrl-C exits 0."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "civicbot", "demo", "--dir", str(tmp_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = ""
    try:
        deadline = time.monotonic() + 90
        while "listening for events" not in output:
            assert time.monotonic() < deadline, output
            assert process.poll() is None, output
            line = await asyncio.to_thread(process.stdout.readline)
            output += line
        user = re.search(r"Log in as:\s+(\S+)", output).group(1)
        password = re.search(r"Password:\s+(\S+)", output).group(1)
        room = re.search(r"Room:.*\((!\S+)\)", output).group(1)
        homeserver = re.search(r"Homeserver:\s+(\S+)", output).group(1)
        assert homeserver == f"http://127.0.0.1:{port}"
        async with await Resident.login(homeserver, user, password) as resident:
            await resident.send_text(room, "!ping")
            reply = await resident.wait_for(
                room, lambda e: "Pong" in e.get("content", {}).get("body", ""), timeout=30
            )
            assert reply["content"]["msgtype"] == "m.notice"
        process.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_a_logged_out_session_logs_in_again_and_carries_on(synapse, residents, bots):
    """Someone signs the bot's session out (or the homeserver expires it): with a password
    configured it logs in afresh instead of stopping."""
    import json

    ann = await residents("ann")
    bot = await bots()
    room = await room_with_bot(ann, bot)
    session = json.loads((bot.directory / "data" / "session.json").read_text())
    async with Resident(synapse.url, bot.user_id, session["access_token"]) as old_session:
        await old_session._request("POST", "/_matrix/client/v3/logout", {})
    ann.mark()
    await ann.send_text(room, "!ping")
    await ann.wait_for(room, is_notice_from(bot.user_id, "Pong"), timeout=60)
    assert "logging in again" in bot.log_text()
    assert bot.running
