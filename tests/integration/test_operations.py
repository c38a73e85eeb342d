"""Operator commands against a real Synapse: backup while the bot runs, restore, start again."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys

from tests.integration.conftest import is_notice_from, reply_target, room_with_bot


async def _civicbot(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "civicbot",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, output.decode()


def _poll_questions(database) -> list[str]:
    conn = sqlite3.connect(database)
    try:
        return [row[0] for row in conn.execute("SELECT question FROM polls_polls ORDER BY id")]
    finally:
        conn.close()


async def test_backup_while_the_bot_writes_then_restore_and_start(residents, bots, tmp_path):
    ann = await residents("ann")
    bot = await bots()
    room = await room_with_bot(ann, bot)
    config, data, backup = str(bot.config_path), bot.directory / "data", tmp_path / "backup"
    ann.mark()
    asked = [await ann.send_text(room, f"!poll Before {n}? | Yes | No") for n in range(3)]
    for n in range(3):
        await ann.wait_for(room, is_notice_from(bot.user_id, f"Before {n}?"), timeout=30)
    # Residents keep the bot writing while the backup is taken.
    during = asyncio.gather(
        *(ann.send_text(room, f"!poll During {n}? | Yes | No") for n in range(5))
    )
    code, output = await _civicbot("backup", str(backup), "--config", config)
    asked += await during
    assert code == 0, output
    for n in range(5):
        await ann.wait_for(room, is_notice_from(bot.user_id, f"During {n}?"), timeout=30)
    assert await bot.stop() == 0

    copied = _poll_questions(backup / "civicbot.sqlite3")
    assert copied[:3] == ["Before 0?", "Before 1?", "Before 2?"]
    assert set(copied[3:]) <= {f"During {n}?" for n in range(5)}  # a snapshot, whole polls
    key = (data / "secret.key").read_text()

    # The disk is lost; the operator restores the backup into an empty data directory.
    shutil.rmtree(data)
    code, output = await _civicbot("restore", str(backup), "--config", config)
    assert code == 0, output
    assert (data / "secret.key").read_text() == key
    await bot.start()
    ann.mark()
    await ann.send_text(room, "!polls")
    listing = await ann.wait_for(room, is_notice_from(bot.user_id, "Before 0?"), timeout=30)
    # Nothing is lost: commands after the backup's sync position are handled again ...
    for question in ["Before 0?", "Before 1?", "Before 2?", *(f"During {n}?" for n in range(5))]:
        assert question in listing["content"]["body"]
    # ... and each still has exactly one reply: the restored session re-sends with the same
    # transaction ids, which the homeserver recognises.
    replies: dict[str, int] = {}
    for event in await ann.messages(room, limit=100):
        target = reply_target(event)
        if event.get("sender") == bot.user_id and target in asked:
            replies[target] = replies.get(target, 0) + 1
    assert replies == {event_id: 1 for event_id in asked}
