"""Issue 21 against a real Synapse: every promised effect happens exactly once, whatever instant
the process dies (each named crash point of civicbot.failpoints); a second process on one
data directory; room upgrades."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from tests.integration.conftest import REPO, agreed_start, is_for, is_notice_from, room_with_bot


async def test_second_process_on_one_data_dir_exits_at_once_naming_the_first(bots):
    bot = await bots()
    first_pid = bot.process.pid
    started = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "civicbot", "run", "--config", str(bot.config_path)],
        capture_output=True,
        text=True,
        cwd=bot.directory,
        env={**os.environ, "PYTHONPATH": str(REPO / "tests" / "support")},
        timeout=60,
    )
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"pid {first_pid}" in lines[0]
    assert time.monotonic() - started < 20  # at once: no login, no sync, no crypto store
    assert "stopped cleanly" not in second.stdout + second.stderr
    assert bot.running
    assert await bot.stop() == 0
    assert "stopped cleanly" in bot.log_text()


# -- crash points: every promised effect exactly once ------------------------------------------
# Each name is a civicbot.failpoints crash point; the bot SIGKILLs itself there, is started
# again without it, and what residents see is counted.
WELCOME_POINTS = (
    "joined-before-welcome",  # joined the room, the hello not yet sent
    "effect-promised:core.welcome",  # the hello promised, not yet sent
    "effect-sent:core.welcome",  # the hello sent, not yet recorded as sent
)
INTRO_POINTS = (
    "effect-promised:mutual_aid.intro",  # accepted and promised, no room yet
    "effect-room-created:mutual_aid.intro",  # the room made, its id not yet recorded
    "effect-sent:mutual_aid.intro",  # the introduction posted, not yet recorded
)
EXPIRY_POINTS = (
    "effect-promised:mutual_aid.expired",  # the post expired, its poster not yet told
    "effect-sent:mutual_aid.expired",  # told, not yet recorded
    "effect-promised:mutual_aid.reminder",  # marked reminded, its poster not yet told
    "effect-sent:mutual_aid.reminder",  # reminded, not yet recorded
)
DM_POINTS = ("dm-created",)  # a direct chat made on the homeserver, not yet recorded
CLOSE_POINTS = (
    "effect-promised:consultations.summary",  # closed, the summary promised, not yet posted
    "effect-sent:consultations.csv",  # the councillor's CSV sent, not yet recorded
)
RESPONSE_POINTS = (
    "effect-promised:consultations.follow",  # the response recorded, a follower not yet told
    "effect-sent:consultations.follow",  # told, not yet recorded
)
# Proved in tests/integration/test_digest.py (test_a_week_of_activity_makes_one_digest_across…)
DIGEST_POINTS = (
    "effect-promised:digest.digest",  # the week claimed and the digest promised, not yet made
    "effect-sent:digest.digest",  # made and posted, not yet recorded
)
# Proved in tests/integration/test_meetings.py (test_propose_answer_fix_download_the_ics_and…)
REMINDER_POINTS = (
    "effect-promised:meetings.reminder",  # the reminder claimed and promised, not yet made
    "effect-sent:meetings.reminder",  # posted in the room, not yet recorded
    "effect-sent:meetings.reminder-dm",  # sent by DM to someone going, not yet recorded
)
# Proved in tests/integration/test_polls.py (test_a_restart_in_the_middle_of_voting_loses…)
RESULTS_POINTS = (
    "effect-promised:polls.results",  # closed, its results promised, not yet counted or posted
    "effect-sent:polls.results",  # the results posted, not yet recorded
)
CRASH_POINTS = (
    WELCOME_POINTS
    + INTRO_POINTS
    + EXPIRY_POINTS
    + DM_POINTS
    + CLOSE_POINTS
    + RESPONSE_POINTS
    + DIGEST_POINTS
    + REMINDER_POINTS
    + RESULTS_POINTS
)


async def start_and_die_at(bot, failpoint: str) -> None:
    """Start the bot with ``failpoint`` active; it must SIGKILL itself there."""
    try:
        await bot.start(env={"CIVICBOT_FAILPOINT": failpoint})
    except RuntimeError:
        pass  # died at the crash point before it was ready: just as good
    assert await bot.wait(60) == -9, f"{failpoint} was never reached:\n{bot.log_text()[-2000:]}"


async def start_clean(bot) -> None:
    await bot.start()


def bodies_from(events, bot_id: str, contains: str) -> list[str]:
    return [
        e["content"].get("body", "")
        for e in events
        if e.get("sender") == bot_id
        and e.get("type") == "m.room.message"
        and contains in e.get("content", {}).get("body", "")
    ]


async def caught_up(resident, room: str, bot) -> None:
    """The bot has started, caught up and kept what it had promised when it answers a ping
    (pending effects are kept right after the first batch)."""
    resident.mark()
    await resident.send_text(room, "!ping")
    await resident.wait_for(room, is_notice_from(bot.user_id, "Pong"), timeout=60)


async def test_welcome_is_said_once_whatever_instant_the_bot_dies(residents, bots):
    mod = await residents("mod")
    bot = await bots()
    home = await room_with_bot(mod, bot)
    assert await bot.stop() == 0
    for point in WELCOME_POINTS:
        room = await mod.create_room(name=f"Crash at {point}")
        await mod.invite(room, bot.user_id)
        await start_and_die_at(bot, point)
        await start_clean(bot)
        await mod.wait_for(room, is_notice_from(bot.user_id, "Hello"), timeout=60)
        await caught_up(mod, home, bot)
        assert len(bodies_from(await mod.messages(room), bot.user_id, "Hello!")) == 1, point
        assert await bot.stop() == 0


async def test_a_direct_chat_is_made_once_whatever_instant_the_bot_dies(residents, bots):
    """createRoom has no transaction id: a bot killed between making a DM and recording it
    made a second one on the replay, and the person had two invitations (one of them empty)."""
    mod, ann = await residents("mod"), await residents("ann")
    bot = await bots()
    room = await room_with_bot(mod, bot, ann)
    assert await bot.stop() == 0
    await ann.send_text(room, "!mine")  # answered by direct message: the bot makes the DM
    await start_and_die_at(bot, "dm-created")
    await start_clean(bot)
    dm = await ann.wait_for_invite_from(bot.user_id, exclude=[room], timeout=60)
    await ann.join(dm)
    await ann.wait_for(
        dm, lambda e: e.get("sender") == bot.user_id and e["type"] == "m.room.message", timeout=60
    )
    await caught_up(mod, room, bot)
    await ann._sync(1)
    assert [r for r in ann._invites if r not in (room, dm)] == []
    assert sorted(await ann.joined_members(dm)) == sorted([ann.user_id, bot.user_id])


def _rooms_invited_to(resident, name: str) -> list[str]:
    """The rooms ``resident`` is invited to whose name contains ``name``."""
    found = []
    for room_id, state in resident._invites.items():
        for event in state.get("events", []) if isinstance(state, dict) else []:
            if event.get("type") == "m.room.name" and name in event["content"].get("name", ""):
                found.append(room_id)
    return found


async def test_introduction_room_is_made_once_whatever_instant_the_bot_dies(residents, bots):
    mod, ann, cat = await residents("mod"), await residents("ann"), await residents("cat")
    bot = await bots()
    room = await room_with_bot(mod, bot, ann, cat)
    for number, point in enumerate(INTRO_POINTS, start=1):
        need = f"N-{number}"
        ann.mark()
        await ann.send_text(room, f"!need help with the shopping, round {number}")
        await ann.wait_for(room, is_notice_from(bot.user_id, f"{need}"))
        cat.mark()
        await cat.send_text(room, f"!can {need}")
        await cat.wait_for(room, is_notice_from(bot.user_id, f"who needs {need}"))
        assert await bot.stop() == 0
        # Ann accepts while the bot is down; it dies at the crash point handling her !accept.
        await ann.send_text(room, f"!accept {need}")
        await start_and_die_at(bot, point)
        await start_clean(bot)
        await caught_up(mod, room, bot)
        await ann.wait_for_invite_from(bot.user_id, exclude=_known(ann, need), timeout=60)
        await cat.wait_for_invite_from(bot.user_id, exclude=_known(cat, need), timeout=60)
        await caught_up(mod, room, bot)
        await ann._sync(1)
        await cat._sync(1)
        made = _rooms_invited_to(ann, f"{need}: mutual aid")
        assert len(made) == 1, (point, made)
        assert _rooms_invited_to(cat, f"{need}: mutual aid") == made, point
        await cat.join(made[0])
        intro = bodies_from(await cat.messages(made[0]), bot.user_id, f"with {need}")
        assert len(intro) == 1, (point, intro)


def _known(resident, need: str) -> list[str]:
    """Invites other than this need's room (those of earlier rounds, the DM)."""
    return [
        r for r in resident._invites if r not in _rooms_invited_to(resident, f"{need}: mutual aid")
    ]


async def test_expiry_and_reminder_dms_are_sent_once_whatever_instant_the_bot_dies(residents, bots):
    mod, ann = await residents("mod"), await residents("ann")
    bot = await bots()
    room = await room_with_bot(mod, bot, ann)
    for number in range(1, 5):
        ann.mark()
        await ann.send_text(room, f"!need a hand with job {number}")
        await ann.wait_for(room, is_notice_from(bot.user_id, f"N-{number}"))
    assert await bot.stop() == 0
    # The bot's clock can't be moved in its own process; its data can: N-1 and N-2 are past
    # their expiry, N-3 and N-4 expire tomorrow (inside the reminder window).
    db = sqlite3.connect(bot.directory / "data" / "civicbot.sqlite3")
    now = datetime.now(UTC)
    with db:
        for number, when in ((1, -1), (2, -1), (3, 24), (4, 24)):
            at = (now + timedelta(hours=when)).strftime("%Y-%m-%dT%H:%M:%SZ")
            db.execute(
                "UPDATE mutual_aid_posts SET expires_at = ?, reminded = 0 WHERE id = ?",
                (at, number),
            )
    db.close()
    for point in EXPIRY_POINTS:
        await start_and_die_at(bot, point)
    await start_clean(bot)
    await caught_up(mod, room, bot)
    dm = await ann.wait_for_invite_from(bot.user_id, timeout=60)
    await ann.join(dm)
    ann.mark()
    await ann.send_text(dm, "!ping")
    await ann.wait_for(dm, is_notice_from(bot.user_id, "Pong"), timeout=60)
    said = await ann.messages(dm, limit=100)
    for number in (1, 2):
        assert len(bodies_from(said, bot.user_id, f"N-{number} (")) == 1, number
        assert "has expired" in bodies_from(said, bot.user_id, f"N-{number} (")[0]
    for number in (3, 4):
        assert len(bodies_from(said, bot.user_id, f"N-{number} (")) == 1, number
        assert "expires on" in bodies_from(said, bot.user_id, f"N-{number} (")[0]


async def test_a_consultations_summary_csv_and_response_go_once_whatever_instant_the_bot_dies(
    residents, bots
):
    mod, cllr, bob = await residents("mod"), await residents("cllr"), await residents("bob")
    bot = await bots()
    room = await room_with_bot(mod, bot, cllr, bob)

    async def say(who, where, text, expect, **kwargs):
        who.mark()
        await who.send_text(where, text, **kwargs)
        return await who.wait_for(where, is_notice_from(bot.user_id, expect), timeout=60)

    async def open_dm(who):
        dm = await who.create_room(invite=[bot.user_id], is_direct=True)
        who.mark()
        await who.wait_for(dm, is_notice_from(bot.user_id, "Hello"), timeout=30)
        return dm

    await say(mod, room, f"!role grant {cllr.user_id} councillor", "Granted")
    root = await say(
        cllr, room, "!consult Park\ncloses in 2 hours\ntext: What would help?", "C-1 Consultation"
    )
    thread = {"thread_root": root["event_id"]}
    await say(bob, room, "!answer C-1 1 More benches", "is noted", **thread)
    await say(bob, room, "!answer C-1 follow", "I'll send you", **thread)
    cllr_dm, bob_dm = await open_dm(cllr), await open_dm(bob)

    # The councillor closes C-1 while the bot is down; it dies at each point of the close.
    assert await bot.stop() == 0
    await cllr.send_text(room, "!consult close C-1")
    for point in CLOSE_POINTS:
        await start_and_die_at(bot, point)
    await start_clean(bot)
    await caught_up(mod, room, bot)
    is_csv = lambda e: e.get("content", {}).get("msgtype") == "m.file"  # noqa: E731
    await cllr.wait_for(cllr_dm, is_csv, timeout=60)
    # And responds while it is down; it dies at each point of telling the follower.
    assert await bot.stop() == 0
    await cllr.send_text(room, "!respond C-1 Four benches by spring")
    for point in RESPONSE_POINTS:
        await start_and_die_at(bot, point)
    await start_clean(bot)
    await caught_up(mod, room, bot)
    await bob.wait_for(bob_dm, is_for(bot.user_id, bob.user_id, "Four benches"), timeout=60)
    await caught_up(mod, room, bot)

    said = await mod.messages(room, limit=100)
    assert len(bodies_from(said, bot.user_id, "Summary of C-1")) == 1
    assert len(bodies_from(said, bot.user_id, "Four benches by spring")) == 1
    assert not bodies_from(said, bot.user_id, "closed already")  # a replay is not refused
    assert not bodies_from(said, bot.user_id, "has a response already")
    assert len(bodies_from(said, bot.user_id, "Posted in the thread of C-1")) == 1
    assert len([e for e in await cllr.messages(cllr_dm, limit=50) if is_csv(e)]) == 1
    told = bodies_from(await bob.messages(bob_dm, limit=50), bot.user_id, "Four benches")
    assert len(told) == 1


def test_crash_points_are_counted():
    """The number the issue asks for: crash points proved once-and-only-once above."""
    assert len(set(CRASH_POINTS)) == len(CRASH_POINTS) == 22


# -- room upgrades -------------------------------------------------------------------------------
async def test_room_upgrade_moves_open_items_settings_roles_and_jobs_to_the_new_room(
    residents, bots
):
    mod, cllr, ann = await residents("mod"), await residents("cllr"), await residents("ann")
    # Reminders 100 s before a meeting: one falls due after the upgrade, while the test waits.
    bot = await bots(plugins={"meetings": {"reminders": ["100s"]}})
    room = await room_with_bot(mod, bot, cllr, ann)

    async def say(who, where, text, expect):
        who.mark()
        await who.send_text(where, text)
        event = await who.wait_for(where, is_notice_from(bot.user_id, expect), timeout=60)
        return str(event["content"]["body"])

    await say(mod, room, f"!role grant {cllr.user_id} councillor", "Granted")
    await say(mod, room, "!config polls.default_duration 3d", "")
    await say(ann, room, "!poll Where should the bench go? | Park | Square", "P-1")
    await say(ann, room, "!meet Litter pick | in 3 minutes | in 3 hours", "📅 M-1")
    starts = agreed_start(await say(ann, room, "!meet fix M-1 1", "✅ M-1 is fixed"), bot.now())
    await say(
        cllr,
        room,
        "!consult Park improvements\ncloses in 2 hours\ntext: What would make it better?",
        "C-1",
    )
    await say(ann, room, "!need a hand carrying shopping", "N-1")

    # Element's "upgrade room": Synapse makes the new room and tombstones the old one.
    upgraded = await mod._request(
        "POST", f"/_matrix/client/v3/rooms/{room}/upgrade", {"new_version": "12"}
    )
    new_room = upgraded["replacement_room"]
    # A private room's replacement is invite-only: Element invites its members, the bot too.
    mod.mark()
    for person in (bot.user_id, cllr.user_id, ann.user_id):
        await mod.invite(new_room, person)
    await cllr.join(new_room)
    await ann.join(new_room)
    # The bot joins when invited and says where the old room's history is: from then on it
    # hears the room (what was said before it joined is not its to answer).
    await mod.wait_for(new_room, is_notice_from(bot.user_id, "This room replaces an older one"))

    # Everything still open is in the new room: its lists, and the councillor's role there.
    assert "P-1" in await say(ann, new_room, "!polls", "P-1")
    assert "M-1" in await say(ann, new_room, "!meetings", "M-1")
    assert "C-1" in await say(ann, new_room, "!consultations", "C-1")
    assert "N-1" in await say(ann, new_room, "!needs", "N-1")
    await say(ann, new_room, "!vote P-1 1", "")
    # The meeting's reminder job, armed before the upgrade, posts in the new room.
    bot.move_clock_to(starts - timedelta(seconds=90))  # past the reminder's time, not the start
    reminder = await ann.wait_for(
        new_room, is_notice_from(bot.user_id, "⏰ M-1: Litter pick starts"), timeout=60
    )
    assert "Sorry" not in reminder["content"]["body"]
    # The councillor's role moved: closing C-1 works and its summary comes here.
    await say(cllr, new_room, "!consult close C-1", "C-1")
    said_new = await ann.messages(new_room, limit=100)
    assert not bodies_from(said_new, bot.user_id, "Hello! I'm civicbot")  # no second hello
    assert not bodies_from(said_new, bot.user_id, "Sorry, something went wrong")
    links = bodies_from(said_new, bot.user_id, "This room replaces an older one")
    assert len(links) == 1 and room in links[0]  # where the old items' history is
    said_old = await ann.messages(room, limit=100)
    assert not bodies_from(said_old, bot.user_id, "⏰ M-1")
