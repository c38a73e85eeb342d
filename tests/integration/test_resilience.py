"""Rate limits and the demo, against a real Synapse."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from urllib.parse import quote

import aiohttp

from civicbot.testing.client import Resident
from civicbot.testing.synapse import free_loopback_port
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


async def test_demo_runs_a_group_room_for_several_residents(tmp_path):
    """`civicbot demo --residents 3`: private Synapse, bot, three printed logins, one named
    group room with all of them; the creator is a moderator, the others are refused as
    neighbours; Ctrl-C exits 0."""
    port, web_port = free_loopback_port(), free_loopback_port()
    command = ["demo", "--dir", str(tmp_path), "--port", str(port), "--residents", "3",
               "--web-port", str(web_port)]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "civicbot", *command],
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
        logins = re.findall(r"Resident \d:\s+(\S+)\s+password:\s+(\S+)", output)
        assert len(logins) == 3, output
        room = re.search(r"Room:.*\((!\S+)\)", output).group(1)
        homeserver = re.search(r"Homeserver:\s+(\S+)", output).group(1)
        assert homeserver == f"http://127.0.0.1:{port}"
        pages = re.search(r"Public pages:\s+(\S+)", output).group(1)
        assert pages == f"http://127.0.0.1:{web_port}"
        async with aiohttp.ClientSession() as http, http.get(pages) as index:
            assert index.status == 200 and "No room has published" in await index.text()
        people = [await Resident.login(homeserver, user, password) for user, password in logins]
        try:
            creator, neighbour, _ = people
            name = await neighbour.get_state(room, "m.room.name")
            assert name["name"] == "civicbot demo"
            members = await neighbour.joined_members(room)
            assert {user for user, _ in logins} <= set(members) and len(members) == 4

            def notice(text):
                return lambda e: (
                    e.get("content", {}).get("msgtype") == "m.notice"
                    and text in e["content"].get("body", "")
                )

            for resident in people:
                resident.mark()
            await people[2].send_text(room, "!ping")
            await people[2].wait_for(room, notice("Pong"), timeout=30)
            await neighbour.send_text(room, "!roles")
            await neighbour.wait_for(room, notice("only moderators"), timeout=30)
            await creator.send_text(room, "!roles")
            await creator.wait_for(room, notice("moderator"), timeout=30)
        finally:
            for resident in people:
                await resident.close()
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
