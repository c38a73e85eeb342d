"""Reminders through the real bot on a controllable clock: exactly once, across restarts,
downtime and failed sends; and a repeating meeting keeps its wall-clock time across DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import recurring_ical_events

from civicbot.scheduling.clock import FakeClock
from civicbot.testing.harness import BotHarness
from civicbot.transport import TransportError
from tests.unit.plugins.meetings_support import (
    ANN,
    BOB,
    ask,
    last_calendar,
    meetings_harness,
    reminders_in,
    restart,
)

LONDON = ZoneInfo("Europe/London")
PROPOSE = "!meet Litter pick planning | tue 8 dec 18:00 | sat 12 dec 10am"
DM_BOB = "!dm-bob-test:test"


def sent_times(h: BotHarness, room: str, prefix: str = "⏰") -> list[datetime]:
    """When each bot message starting with ``prefix`` reached ``room`` (server timestamps)."""
    return [
        datetime.fromtimestamp(e["origin_server_ts"] / 1000, UTC)
        for e in h.transport.rooms[room].events
        if str((e.get("content") or {}).get("body", "")).startswith(prefix)
    ]


async def fixed_meeting(h: BotHarness) -> str:
    room = h.room(members=[ANN, BOB])
    await ask(h, room, ANN, PROPOSE)
    await ask(h, room, ANN, "!meet fix M-1 1")
    await ask(h, room, BOB, "!rsvp M-1 going")
    return room


async def test_reminders_go_to_the_room_and_to_those_going_once_each(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = await fixed_meeting(h)
        for _ in range(20):
            await h.advance(timedelta(days=1))
        when = "(Tue 8 Dec 18:00–19:00 Europe/London)."
        assert reminders_in(h, room) == [
            f"⏰ M-1: Litter pick planning starts in 24 hours {when}",
            f"⏰ M-1: Litter pick planning starts in 1 hour {when}",
        ]
        assert sent_times(h, room) == [
            datetime(2026, 12, 7, 18, tzinfo=UTC),
            datetime(2026, 12, 8, 17, tzinfo=UTC),
        ]
        assert len(reminders_in(h, DM_BOB)) == 2  # Bob is going; Ann didn't answer


async def test_the_offsets_are_a_room_setting(tmp_path):
    settings = {"plugins": {"meetings": {"reminders": ["2h", "15m"]}}}
    async with meetings_harness(tmp_path, **settings) as h:
        room = await fixed_meeting(h)
        for _ in range(20):
            await h.advance(timedelta(days=1))
        assert sent_times(h, room) == [
            datetime(2026, 12, 8, 16, tzinfo=UTC),
            datetime(2026, 12, 8, 17, 45, tzinfo=UTC),
        ]


async def test_a_restart_between_fixing_and_reminding_sends_each_once(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = await fixed_meeting(h)
        h = await restart(h)
        await h.advance(timedelta(days=14, hours=9, minutes=30))  # past the 24 h one
        h = await restart(h)
        h = await restart(h)
        for _ in range(5):
            await h.advance(timedelta(days=1))
        assert len(reminders_in(h, room)) == 2
        assert len(reminders_in(h, DM_BOB)) == 2
        rows = await h.db.fetchall("SELECT key, event_id FROM meetings_reminders")
        assert len(rows) == 2 and all(r[1] for r in rows)


async def stop_for(h: BotHarness, downtime: timedelta) -> BotHarness:
    """Stop the bot, let ``downtime`` pass with nobody listening, start it again."""
    await h.bot.stop()
    h.clock.advance(downtime)
    fresh = await BotHarness.start(
        h.path,
        h.bot.plugin_classes,
        db=h.db,
        clock=h.clock,
        transport=h.transport,
        **h.bot.settings.model_dump(mode="python"),
    )
    fresh._rooms = h._rooms
    fresh.holder = h.holder  # type: ignore[attr-defined]
    fresh.holder.append(fresh)  # type: ignore[attr-defined]
    await fresh.bot.handle_batch([])
    await fresh.advance(timedelta(seconds=1))
    return fresh


async def test_after_downtime_a_missed_reminder_comes_late_unless_the_meeting_started(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = await fixed_meeting(h)
        await h.advance(timedelta(days=14))  # Mon 7 Dec 09:00
        # Down from 09:00 to 21:00: the 24-hour reminder (18:00) is missed.
        h = await stop_for(h, timedelta(hours=12))
        late = reminders_in(h, room)
        assert len(late) == 1 and "starts in 21 hours" in late[0]
        assert "Sorry, this reminder is late (the bot was offline)" in late[0]
        # Down again across the 1-hour reminder and the start: nothing is sent.
        h = await stop_for(h, timedelta(hours=21, minutes=30))
        assert len(reminders_in(h, room)) == 1
        await h.advance(timedelta(days=3))
        assert len(reminders_in(h, room)) == 1


async def test_a_failed_send_is_retried_and_still_sent_once(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = await fixed_meeting(h)
        await h.advance(timedelta(days=14, hours=8, minutes=59))
        h.transport.fail_sends = 1
        await h.advance(timedelta(minutes=1, seconds=10))  # the 24 h reminder's send fails
        assert reminders_in(h, room) == []
        await h.advance(timedelta(minutes=5))  # the job's retry
        assert len(reminders_in(h, room)) == 1
        assert len(reminders_in(h, DM_BOB)) == 1
        await h.advance(timedelta(days=2))
        assert len(reminders_in(h, room)) == 2 and len(reminders_in(h, DM_BOB)) == 2


async def test_a_reminder_dm_that_fails_is_sent_once_when_it_can_be(tmp_path, monkeypatch):
    """Each DM of a reminder is its own promise in the outbox: one that failed was logged and
    lost while the room's went out."""
    async with meetings_harness(tmp_path) as h:
        room = await fixed_meeting(h)
        real = h.transport.send_event
        away = {"dm": True}

        async def dm_fails(room_id: str, *args, **kwargs):
            if room_id == DM_BOB and away["dm"]:
                raise TransportError("simulated failure", "M_UNKNOWN")
            return await real(room_id, *args, **kwargs)

        monkeypatch.setattr(h.transport, "send_event", dm_fails)
        await h.advance(timedelta(days=14, hours=9, minutes=1))  # the 24 h reminder is due
        assert len(reminders_in(h, room)) == 1
        assert reminders_in(h, DM_BOB) == []
        away["dm"] = False
        await h.advance(timedelta(minutes=2))  # the outbox tries again each minute
        assert len(reminders_in(h, DM_BOB)) == 1
        await h.advance(timedelta(minutes=30))
        assert len(reminders_in(h, DM_BOB)) == 1 and len(reminders_in(h, room)) == 1


@pytest.mark.parametrize(
    ("start", "rule", "change"),
    [
        (datetime(2027, 3, 8, 9, tzinfo=UTC), "every week on thursday 19:00", 28),  # 28 Mar
        (datetime(2027, 10, 11, 9, tzinfo=UTC), "every week on tuesday 19:00", 31),  # 31 Oct
    ],
)
async def test_a_repeating_meeting_keeps_its_wall_clock_time_across_dst(
    tmp_path, start, rule, change
):
    async with meetings_harness(tmp_path, clock=FakeClock(start)) as h:
        room = h.room(members=[ANN, BOB])
        reply = await ask(h, room, ANN, f"!meet Residents | {rule} | for 6 times")
        assert reply.startswith("✅ M-1 is fixed: Residents, every ")
        await ask(h, room, BOB, "!rsvp M-1 going")  # the calendar file comes by DM
        calendar = last_calendar(h, await h.transport.direct_room(BOB))
        event = calendar.walk("VEVENT")[0]
        assert str(event["DTSTART"].params["TZID"]) == "Europe/London"
        assert "RRULE" in event and calendar.walk("VTIMEZONE")
        # Expanded the way calendar apps do, independently of the bot's own recurrence code.
        found = recurring_ical_events.of(calendar).between(start, start + timedelta(days=60))
        starts = [e["DTSTART"].dt for e in found]
        assert len(starts) == 6
        assert {s.astimezone(LONDON).strftime("%H:%M") for s in starts} == {"19:00"}
        offsets = {s.astimezone(UTC).hour for s in starts}
        assert len(offsets) == 2, "the UTC hour moves with the clocks; the local one doesn't"
        for _ in range(60):
            await h.advance(timedelta(days=1))
        one_hour = [t for t in reminders_in(h, room) if "starts in 1 hour" in t]
        assert len(one_hour) == 6 and all("19:00–20:00 Europe/London" in t for t in one_hour)
        times = [t.astimezone(LONDON) for t in sent_times(h, room, "⏰ M-1: Residents starts in 1")]
        assert [t.strftime("%H:%M") for t in times] == ["18:00"] * 6
        assert any(t.day < change for t in times if t.month == start.month)


async def test_a_crash_after_the_deadline_fixed_a_meeting_still_announces_it_once(tmp_path):
    async with meetings_harness(tmp_path) as h:
        room = h.room(members=[ANN, BOB])
        await ask(h, room, ANN, PROPOSE + " | decide by fri 27 nov 12:00")
        await ask(h, room, BOB, "!avail M-1 2")
        # The deadline's fix is stored, then the bot dies before announcing it.
        await h.db.execute(
            "UPDATE meetings_meetings SET state = 'fixed', fixed_slot = 2, fixed_by = '',"
            " start = (SELECT start FROM meetings_slots WHERE meeting_id = 1 AND number = 2)"
        )
        h = await stop_for(h, timedelta(days=5))
        announced = [t for t in h.texts(room) if t.startswith("✅ M-1 is fixed")]
        assert len(announced) == 1 and "Sat 12 Dec 10:00" in announced[0]
        h = await stop_for(h, timedelta(hours=1))
        assert len([t for t in h.texts(room) if t.startswith("✅ M-1 is fixed")]) == 1
