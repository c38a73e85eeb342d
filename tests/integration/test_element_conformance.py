"""The bot as Element shows it (issue 20): one neighbourhood week checked with the code residents'
clients run. matrix-js-sdk 43 with its Rust crypto (Element Web's engine) counts the polls with
its Poll model and element-web's rules, reads every link the way Element's permalink parser does
and ical.js reads the calendar file; Synapse's push rules say, through ``/notifications``, who
was notified of what.

The JavaScript side (tests/conformance/js) is installed from its lockfile by ``.ci/run``
(``npm ci``); node must be on the PATH.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import is_for, is_notice_from, room_with_bot

JS = Path(__file__).resolve().parents[1] / "conformance" / "js"
START = "org.matrix.msc3381.poll.start"
RESPONSE = "org.matrix.msc3381.poll.response"
END = "org.matrix.msc3381.poll.end"
CROWD = " ".join(f"@n{n}:lh" for n in range(12))  # twelve ids, short enough for a title


def element_view(resident: Any, bot_id: str, rooms: list[str]) -> dict[str, Any]:
    """What Element shows ``resident`` in ``rooms`` (see element_view.mjs)."""
    node = shutil.which("node")
    assert node, "node is needed for the Element conformance test"
    assert (JS / "node_modules" / "matrix-js-sdk").is_dir(), (
        f"run `npm ci` in {JS} (.ci/run does) to install matrix-js-sdk and ical.js"
    )
    request = {
        "homeserver": resident.homeserver,
        "userId": resident.user_id,
        "accessToken": resident.access_token,
        "rooms": rooms,
        "botId": bot_id,
    }
    done = subprocess.run(
        [node, str(JS / "element_view.mjs"), json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=JS,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


async def notifications(resident: Any) -> list[dict[str, Any]]:
    """Synapse's ``/notifications`` for ``resident``: every event its push rules said to notify
    them of (``highlight`` when it mentioned them)."""
    data = await resident._request("GET", "/_matrix/client/v3/notifications?limit=200")
    return list(data.get("notifications") or [])


def highlighted(notification: dict[str, Any]) -> bool:
    """Whether the push rules highlighted it (a mention: the red badge, a sound)."""
    return any(
        isinstance(a, dict) and a.get("set_tweak") == "highlight" and a.get("value", True)
        for a in notification.get("actions") or []
    )


async def until(check: Any, timeout: float = 30) -> Any:
    """Wait for a condition, not for a time: push is processed just after an event is stored."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.3)


def time_poll(bot_id: str, number: int) -> Any:
    """The bot's availability poll for candidate time ``number``."""

    def check(event: dict[str, Any]) -> bool:
        block = (event.get("content") or {}).get(START) or {}
        text = (block.get("question") or {}).get("org.matrix.msc1767.text", "")
        return event["sender"] == bot_id and event["type"] == START and f"time {number}:" in text

    return check


def table_edit(bot_id: str, pattern: str) -> Any:
    """An edit of the bot's availability table with a line matching ``pattern``."""

    def check(event: dict[str, Any]) -> bool:
        new = (event.get("content") or {}).get("m.new_content") or {}
        return event["sender"] == bot_id and bool(re.search(pattern, new.get("body", ""), re.M))

    return check


def tally(body: str) -> dict[str, int]:
    """The bot's results text: ``1. Yes: ███ 2 (67%)`` → {"Yes": 2}."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^\d+\. (.+?): \S* (\d+) \(", body, re.M)}


async def test_element_shows_what_the_bot_means_and_notifies_only_who_it_should(residents, bots):
    ann, bob, cat, dan = [await residents(n) for n in ("ann", "bob", "cat", "dan")]
    bot = await bots()
    room = await room_with_bot(ann, bot, bob, cat, dan)
    everyone = (ann, bob, cat, dan)
    names = []
    for person in everyone:
        profile = await person._request("GET", f"/_matrix/client/v3/profile/{person.user_id}")
        names.append(profile.get("displayname") or person.user_id)
    # What a power-level-0 resident types: @room, every member's display name, twelve ids. The
    # bot is a moderator (power 50, enough for @room in Synapse's push rules), as in many rooms:
    # only what the bot means to say may notify anyone.
    crowd = f"@room {' '.join(names)} {CROWD}"
    await ann.set_power_level(room, bot.user_id, 50)

    # A poll and a meeting whose text would ping everyone if the bot passed it on.
    bob.mark()
    await bob.send_text(room, f"!poll Pizza for {crowd}? | Yes | No")
    poll = await bob.wait_for(room, lambda e: e["type"] == START and e["sender"] == bot.user_id)
    await bob.send_text(room, f"!meet Party {crowd} | 2027-01-14 19:30 | 2027-01-16 10:00")
    await bob.wait_for(room, is_notice_from(bot.user_id, "📅 M-1"))
    times = [await bob.wait_for(room, time_poll(bot.user_id, n)) for n in (1, 2)]
    # Availability as Element Web gives it: one tap per poll, one poll per time.
    for voter, time, answer in ((ann, 0, "yes"), (dan, 0, "ifneedbe"), (dan, 1, "yes")):
        await voter.send_event(
            room,
            RESPONSE,
            {
                "m.relates_to": {"rel_type": "m.reference", "event_id": times[time]["event_id"]},
                RESPONSE: {"answers": [answer]},
            },
        )
    table = await bob.wait_for(room, table_edit(bot.user_id, r"^2\. .*: 1 yes"))
    answers = [a["id"] for a in poll["content"][START]["answers"]]
    for voter, chosen in (
        (ann, [answers[0]]),
        (cat, [answers[0], answers[0]]),
        (dan, [answers[1]]),
    ):
        await voter.send_event(
            room,
            RESPONSE,
            {
                "m.relates_to": {"rel_type": "m.reference", "event_id": poll["event_id"]},
                RESPONSE: {"answers": chosen},
            },
        )
    await bob.send_text(room, "!poll show P-1")
    await bob.wait_for(room, is_notice_from(bot.user_id, "3 people have voted"))
    await bob.send_text(room, "!poll close P-1")
    results = await bob.wait_for(room, is_notice_from(bot.user_id, "Results of P-1"))
    is_end = lambda e: e["type"] == END and e["sender"] == bot.user_id  # noqa: E731
    end = await bob.wait_for(room, lambda e: is_end(e) and e["content"].get("m.poll.results"))

    # Mutual aid: Cat raises a hand on Bob's need; Bob must hear of it, then both of the intro.
    await bob.send_text(room, "!need help carrying shopping upstairs | this week")
    post = await bob.wait_for(room, is_notice_from(bot.user_id, "!can N-1"))
    await cat.react(room, post["event_id"], "✋")
    cat_dm = await cat.wait_for_invite_from(bot.user_id)  # for the receipt
    await cat.join(cat_dm)
    await cat.wait_for(cat_dm, is_for(bot.user_id, cat.user_id, "I've asked the person"))
    bob_dm = await bob.wait_for_invite_from(bot.user_id)
    await bob.join(bob_dm)
    await bob.wait_for(bob_dm, is_for(bot.user_id, bob.user_id, "offers to help with N-1"))
    await bob.send_text(bob_dm, "!accept N-1")
    intro_room = await bob.wait_for_invite_from(bot.user_id, exclude=[bob_dm])
    await bob.join(intro_room)
    await cat.wait_for_invite_from(bot.user_id, exclude=[cat_dm])
    await cat.join(intro_room)

    # The meeting is fixed; Cat is going and gets the calendar file by DM, not the room.
    await bob.send_text(room, "!meet fix M-1 1")
    await bob.wait_for(room, is_notice_from(bot.user_id, "✅ M-1 is fixed"))
    await cat.send_text(room, "!rsvp M-1 going")
    await cat.wait_for(room, is_notice_from(bot.user_id, "See you there: M-1"))
    await cat.wait_for(cat_dm, lambda e: e["content"].get("msgtype") == "m.file")
    await ann.send_text(room, "!digest preview")
    await ann.wait_for(room, is_notice_from(bot.user_id, "P-1"))

    # -- what Element shows ----------------------------------------------------------------
    seen = element_view(cat, bot.user_id, [room, cat_dm])
    [shown] = [p for p in seen["polls"] if p["eventId"] == poll["event_id"]]
    assert shown["ended"]
    by_text = {a["text"]: shown["counts"].get(a["id"], 0) for a in shown["answers"]}
    assert by_text == tally(results["content"]["body"]) == {"Yes": 2, "No": 1}
    # The end's MSC3381 results are the same count.
    assert end["content"]["m.poll.results"] == {
        a["id"]: by_text[a["text"]] for a in shown["answers"]
    }
    # Each time's availability as Element counts it is what the bot's table says.
    rows = table["content"]["m.new_content"]["body"]
    for number, start in enumerate(times, start=1):
        [time_poll_seen] = [p for p in seen["polls"] if p["eventId"] == start["event_id"]]
        assert time_poll_seen["maxSelections"] == 1 and time_poll_seen["ended"]
        counted = time_poll_seen["counts"]
        row = re.search(rf"^{number}\. .*?: (\d+) yes.*?, (\d+) if need be", rows, re.M)
        assert row, rows
        assert (counted.get("yes", 0), counted.get("ifneedbe", 0)) == (
            int(row[1]),
            int(row[2]),
        )
    assert seen["links"], "the bot's messages link to what they talk about"
    for link in seen["links"]:
        assert link["via"] == ["localhost"], link  # reachable from another homeserver
        assert link["roomId"] == room or link["roomId"].startswith("!"), link
    [calendar] = seen["calendars"]
    assert calendar["summary"].startswith("Party ")
    assert calendar["start"] == "2027-01-14T19:30:00.000Z"  # the bot's zone here is UTC
    assert [link["via"] for link in calendar["links"]] == [["localhost"]]

    # -- who was notified ------------------------------------------------------------------
    async def of(person: Any) -> list[dict[str, Any]]:
        return await notifications(person)

    def bot_events(found: list[dict[str, Any]], room_id: str) -> list[dict[str, Any]]:
        return [n for n in found if n["room_id"] == room_id and n["event"]["sender"] == bot.user_id]

    async def bob_told() -> bool:
        return bool(bot_events(await of(bob), bob_dm)) and bool(
            bot_events(await of(bob), intro_room)
        )

    # (A message sent before someone joins notifies nobody; the invitation notifies them.)
    assert await until(bob_told), "Bob hears of the offer of help and of the introduction"
    assert await until(lambda: _has(of(cat), intro_room, bot.user_id))
    assert await until(lambda: _has(of(cat), cat_dm, bot.user_id))  # receipt, calendar file
    for person in everyone:
        found = await of(person)
        in_room = bot_events(found, room)
        assert not [n for n in in_room if highlighted(n)], (person.user_id, in_room)
        kinds = {n["event"]["content"].get("msgtype") for n in in_room}
        assert not kinds & {"m.notice", "m.file", "m.text"}, (person.user_id, kinds)
        for n in found:
            if n["event"]["sender"] == bot.user_id and n["room_id"] != room:
                # Anything of the bot's that notified went to that person's own rooms.
                members = await person.joined_members(n["room_id"])
                assert len(set(members) - {bot.user_id}) <= 2, members


async def _has(found: Any, room_id: str, sender: str) -> bool:
    return any(n["room_id"] == room_id and n["event"]["sender"] == sender for n in await found)


@pytest.fixture(autouse=True)
def _conformance_tools() -> None:
    """Fail loudly (never skip) when the tools this test needs are missing."""
    assert shutil.which("node"), "node is needed for the Element conformance test"
