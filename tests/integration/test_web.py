"""The public pages against a real Synapse, the real bot (``civicbot run`` with ``[web]`` on)
and real Matrix residents, read in a real headless Chromium with axe-core.

One scenario, many checks: a week of room life (a poll decided with an outcome, a meeting
fixed and moved, a consultation answered and responded to, offers, a need and a private need),
then the page, its items and links, the noticeboard (page, print and ``!noticeboard``'s PDF)
and the feeds (the room's and a person's secret one). Screenshots go to
``$CIVICBOT_SCREENSHOTS`` when set (docs/screenshots/ holds a committed set)."""

from __future__ import annotations

import io
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import aiohttp
import icalendar
import pytest
from pypdf import PdfReader

from civicbot.storage.secret_key import installation_key, keyed_hasher
from civicbot.testing.synapse import free_loopback_port
from tests.integration.browser import Browser, chromium_paths
from tests.integration.conftest import is_for, is_notice_from, room_with_bot

NO_FLOOD = {"person_burst": 0, "room_burst": 0, "everywhere_burst": 0}
A4 = (595.28, 841.89)  # points


def is_file(sender: str):
    return lambda e: (
        e.get("sender") == sender and (e.get("content") or {}).get("msgtype") == "m.file"
    )


async def set_name(person, shown: str) -> None:
    await person._request(
        "PUT", f"/_matrix/client/v3/profile/{person.user_id}/displayname", {"displayname": shown}
    )


async def say(person, room: str, text: str, bot_id: str, expect: str) -> dict:
    person.mark()
    await person.send_text(room, text)
    return await person.wait_for(room, is_notice_from(bot_id, expect), timeout=30)


async def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.read(), dict(response.headers)


def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CIVICBOT_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def serious(violations: list[dict]) -> list[str]:
    return [
        f"{v['id']} ({v['impact']}): {v.get('help')} {[n.get('target') for n in v['nodes']][:3]}"
        for v in violations
        if v.get("impact") in ("serious", "critical")
    ]


@pytest.fixture
def browser():
    chromium_paths()  # a clear message when .ci/run has not installed them
    found = Browser()
    try:
        yield found
    finally:
        found.close()


async def test_a_week_of_room_life_on_the_public_page_feeds_and_noticeboard(
    residents, bots, browser, tmp_path
):
    shots = screenshots(tmp_path)
    ann, bob, cat = await residents("ann"), await residents("bob"), await residents("cat")
    for person, shown in ((ann, "Ann Organiser"), (bob, "Bob Builder"), (cat, "Cat Private")):
        await set_name(person, shown)
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    bot = await bots(
        bot={"timezone": "UTC"},
        limits=NO_FLOOD,
        web={"listen": f"127.0.0.1:{port}", "public_url": base, "requests_burst": 1000},
    )
    room = await room_with_bot(ann, bot, bob, cat)
    other = await room_with_bot(ann, bot, bob)  # never published
    await ann.send_state(room, "m.room.topic", {"topic": "Bins, benches & the park"})
    me = bot.user_id

    # -- a week of room life -------------------------------------------------------------------
    await say(ann, room, "!poll Which day for the litter pick? | Saturday | Sunday", me, "P-1")
    await say(bob, room, "!vote P-1 1", me, "P-1")
    await say(cat, room, "!vote P-1 1", me, "P-1")
    await say(ann, room, "!poll close P-1", me, "Saturday")
    await say(ann, room, "!outcome P-1 Litter pick on Saturday mornings", me, "P-1")
    first = (datetime.now(UTC) + timedelta(days=5)).replace(hour=18, minute=0, second=0)
    moved_to = first + timedelta(days=1, hours=1)
    await say(ann, room, f"!meet Litter pick planning | {first:%Y-%m-%d %H:%M} | at Church Hall",
              me, "M-1")  # fmt: skip
    await say(ann, room, "!meet fix M-1 1", me, "M-1 is fixed")
    await say(bob, room, "!rsvp M-1 going", me, "M-1")
    await say(ann, room, "!consult Park improvements | What should the grant pay for? | "
              "closes in 3 days | one: Which comes first? Benches / Lights", me, "C-1")  # fmt: skip
    for person, choice in ((ann, "a"), (bob, "a"), (cat, "b")):
        await say(person, room, f"!answer C-1 1 {choice}", me, "C-1")
    await say(ann, room, "!consult close C-1", me, "Summary of C-1")
    await say(ann, room, "!respond C-1 Benches first: ordered for January", me, "C-1")
    await say(bob, room, "!offer I can fix bikes | ongoing", me, "O-1")
    await say(bob, room, "!need help moving a sofa | this week", me, "N-1")
    await say(cat, room, "!mine", me, "direct message")
    cat_dm = await cat.wait_for_invite()
    await cat.join(cat_dm)
    # A private need goes only to a room its moderators marked, and a room made this week
    # (as this one is) only when the person names it (issue 19).
    await say(ann, room, "!config mutual_aid.accepts_private_needs true", me, "Done")
    await say(cat, cat_dm, "!need a lift to the clinic | this week", me, "Is this the room")
    await say(cat, cat_dm, "!need a lift to the clinic | this week | room: 1", me, "N-2 is posted")

    # -- published by a moderator, not by a resident -------------------------------------------
    await say(bob, room, "!config web.public true", me, "Sorry, only")
    await say(ann, room, "!web", me, "no public page")
    await say(ann, room, "!config web.public true", me, "Done")
    answer = await say(ann, room, "!web", me, "public page")
    page_url = re.search(r"(http://\S+/r/\w+)\n", answer["content"]["body"]).group(1)

    # The room's feed before the meeting moves.
    status, body, headers = await get(f"{page_url}/calendar.ics")
    assert status == 200 and headers["Content-Type"].startswith("text/calendar")
    (before,) = icalendar.Calendar.from_ical(body).walk("VEVENT")
    await say(ann, room, f"!meet move M-1 {moved_to:%Y-%m-%d %H:%M}", me, "M-1")

    # -- the page in Chromium ------------------------------------------------------------------
    browser.open(page_url)
    text = browser.text()
    assert browser.title.startswith("Elm Street")
    assert "Bins, benches & the park" in text
    for shown in (
        "Which day for the litter pick?", "Winner: Saturday.", "Litter pick on Saturday mornings",
        "Litter pick planning", f"{moved_to:%a} {moved_to.day} {moved_to:%b} 19:00", "moved",
        "Park improvements", "Which comes first? — Benches 2, Lights 1",
        "Benches first: ordered for January", "I can fix bikes", "help moving a sofa",
        "a lift to the clinic", "Bob Builder", "Ann Organiser",
    ):  # fmt: skip
        assert shown in text, shown
    # The private need is on the page; who asked is nowhere in it.
    html = browser.html()
    for secret in ("Cat Private", cat.user_id, cat.user_id.split(":")[0]):
        assert secret not in html, secret
    assert 'lang="en"' in html and "<script" not in html.replace("<noscript", "")
    assert not serious(browser.axe()), serious(browser.axe())
    browser.screenshot(shots / "room-desktop.png", 1280)
    browser.phone(True)
    browser.open(page_url)
    assert not browser.overflows_horizontally()
    assert not serious(browser.axe())
    browser.screenshot(shots / "room-phone.png", 390)
    browser.phone(False)

    # Every link works: our own pages answer 200 in the browser; each matrix.to link names an
    # event the residents can fetch from the homeserver in this very room, with via=.
    browser.open(page_url)
    links = browser.links()
    own = sorted({a["href"].split("#")[0] for a in links if a["href"].startswith(base)})
    for label in ("P-1", "M-1", "C-1", "O-1", "N-1", "N-2"):
        assert f"{page_url}/{label}" in own, label
    events = [a["href"] for a in links if a["href"].startswith("https://matrix.to/#/!")]
    assert len(events) >= 7  # the join link and one per item
    for href in events:
        assert "via=" in href, href
        path = unquote(href.removeprefix("https://matrix.to/#/").split("?")[0])
        room_id, _, event_id = path.partition("/")
        assert room_id == room
        if event_id:
            found = await bob._request(
                "GET", f"/_matrix/client/v3/rooms/{room}/event/{event_id.replace('$', '%24')}"
            )
            assert found["sender"] == bot.user_id
    for url in own:
        if url.endswith(".ics"):
            status, _, _ = await get(url)
        else:
            status = browser.status_of(url)
        assert status == 200, url
    browser.open(f"{page_url}/N-2")
    assert "a lift to the clinic" in browser.text() and "Cat Private" not in browser.html()
    assert not serious(browser.axe())

    # -- a room that did not opt in, and an address that never existed -------------------------
    slug_of = keyed_hasher(installation_key(bot.directory / "data"))
    other_slug = slug_of(f"web-room:{other}")[:20]
    assert browser.status_of(f"{base}/r/{other_slug}") == 404
    assert "Not found" in browser.title
    assert browser.status_of(f"{base}/r/{other_slug}/calendar.ics") == 404
    assert browser.status_of(f"{base}/") == 200
    assert other_slug not in browser.html() and page_url.rsplit("/", 1)[1] in browser.html()

    # -- the noticeboard: the page, printed to one A4 page, and sent by !noticeboard -----------
    browser.open(f"{page_url}/noticeboard")
    board = browser.text()
    assert "Litter pick planning" in board and "Benches first" in board
    assert "I can fix bikes" in board
    assert not serious(browser.axe())
    printed = PdfReader(io.BytesIO(browser.print_pdf()))
    assert len(printed.pages) == 1
    box = printed.pages[0].mediabox
    assert (float(box.width), float(box.height)) == pytest.approx(A4, abs=1)
    browser.print_preview(shots / "noticeboard-print.png")

    ann.mark()
    await say(bob, room, "!noticeboard", me, "Sorry, only")
    await say(ann, room, "!noticeboard", me, "by direct message")
    ann_dm = await ann.wait_for_invite()
    await ann.join(ann_dm)
    sent = await ann.wait_for(ann_dm, is_file(bot.user_id), timeout=60)
    assert sent["content"]["info"]["mimetype"] == "application/pdf"
    pdf = await ann.download(sent["content"]["url"])
    (shots / "noticeboard.pdf").write_bytes(pdf)
    board_pdf = PdfReader(io.BytesIO(pdf))
    assert len(board_pdf.pages) == 1
    box = board_pdf.pages[0].mediabox
    assert (float(box.width), float(box.height)) == pytest.approx(A4, abs=1)
    assert "Litter pick planning" in board_pdf.pages[0].extract_text()

    # -- the feeds -----------------------------------------------------------------------------
    status, body, _ = await get(f"{page_url}/calendar.ics")
    (after,) = icalendar.Calendar.from_ical(body).walk("VEVENT")
    assert str(after["UID"]) == str(before["UID"])
    assert int(after["SEQUENCE"]) > int(before["SEQUENCE"])
    assert after.decoded("DTSTART").astimezone(UTC).hour == moved_to.hour

    bob.mark()
    await bob.send_text(room, "!calendar")
    await bob.wait_for(room, is_notice_from(me, "direct message"))
    bob_dm = await bob.wait_for_invite()
    await bob.join(bob_dm)
    told = await bob.wait_for(bob_dm, is_for(me, bob.user_id, "calendar feed"))
    secret = re.search(r"\(or add it by URL: (\S+)\)", told["content"]["body"]).group(1)
    assert secret not in str(await bob.messages(room, limit=100))
    status, body, headers = await get(secret)
    assert status == 200 and headers["Cache-Control"].startswith("private")
    (mine,) = icalendar.Calendar.from_ical(body).walk("VEVENT")
    assert str(mine["UID"]) == str(before["UID"])
    bob.mark()
    await bob.send_text(bob_dm, "!calendar reset")
    renewed = await bob.wait_for(bob_dm, is_for(me, bob.user_id, "new calendar feed"))
    fresh = re.search(r"\(or add it by URL: (\S+)\)", renewed["content"]["body"]).group(1)
    assert fresh != secret
    assert (await get(secret))[0] == 404
    assert (await get(fresh))[0] == 200
