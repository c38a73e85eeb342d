"""The meetings tables: idempotent create, fixing once, latest answer wins, exactly-once
reminders, changes that bump SEQUENCE, and export/forget keeping the counts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from civicbot_plugins.meetings.migrations import MIGRATIONS
from civicbot_plugins.meetings.models import CANCELLED, FIXED, PROPOSED, is_anonymous
from civicbot_plugins.meetings.parsing import parse_proposal
from civicbot_plugins.meetings.personal import export_person, forget_person
from civicbot_plugins.meetings.records import RecordStore
from civicbot_plugins.meetings.service import Answer, Rsvp, best_slot, tally
from civicbot_plugins.meetings.store import MeetingStore

from civicbot.storage.database import Database

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 12, 1, 19, tzinfo=UTC)
ROOM = "!room:example.org"
Y, M, N = Answer.YES, Answer.MAYBE, Answer.NO


@pytest.fixture
async def db(tmp_path):
    database = await Database.open(tmp_path / "db.sqlite3")
    await database.migrate("meetings", MIGRATIONS)
    yield database
    await database.close()


def proposal(text="Plan | tue 8 dec 18:00 | wed 9 dec 18:00 | thu 10 dec 18:00 | decide by sat"):
    return parse_proposal(text, LONDON, NOW)


async def test_create_is_idempotent_per_source_event(db):
    store = MeetingStore(db)
    meeting, created = await store.create(ROOM, "$ev1", "@ann:x", proposal(), NOW)
    again, created_again = await store.create(ROOM, "$ev1", "@ann:x", proposal(), NOW)
    assert created and not created_again and again == meeting
    assert meeting.label == "M-1" and meeting.state == PROPOSED and meeting.start is None
    assert len(meeting.slots) == 3 and meeting.slots[0] == datetime(2026, 12, 8, 18, tzinfo=UTC)
    assert meeting.decide_by == datetime(2026, 12, 5, 18, tzinfo=UTC)
    assert meeting.schedule() is None
    assert await store.proposed_in(ROOM) == [meeting]
    assert await store.decisions_due(NOW) == []
    assert await store.decisions_due(NOW + timedelta(days=4)) == [meeting]


async def test_fix_once_then_move_and_cancel_bump_the_sequence(db):
    store = MeetingStore(db)
    meeting, _ = await store.create(ROOM, "$ev1", "@ann:x", proposal(), NOW)
    assert not await store.fix(meeting.id, 9, "@ann:x", NOW)  # no slot 9
    assert await store.fix(meeting.id, 2, "@ann:x", NOW)
    assert not await store.fix(meeting.id, 1, "@bob:x", NOW)  # already fixed
    fixed = await store.get(meeting.id)
    assert fixed is not None and fixed.state == FIXED and fixed.fixed_slot == 2
    assert fixed.start == datetime(2026, 12, 9, 18, tzinfo=UTC) and fixed.sequence == 0
    assert await store.active(NOW) == [fixed]
    assert await store.active(datetime(2026, 12, 9, 19, 1, tzinfo=UTC)) == []  # it has ended
    later = NOW + timedelta(hours=1)
    assert await store.move(meeting.id, datetime(2026, 12, 11, 18, tzinfo=UTC), later) == 1
    moved = await store.get(meeting.id)
    assert moved is not None and moved.changed_at == later and moved.sequence == 1
    assert await store.cancel(meeting.id, later)
    assert not await store.cancel(meeting.id, later)
    gone = await store.get(meeting.id)
    assert gone is not None and gone.state == CANCELLED and gone.sequence == 2
    assert await store.active(NOW) == []


async def test_repeating_meeting_is_fixed_at_once_and_single_occurrences_change(db):
    store = MeetingStore(db)
    meeting, _ = await store.create(
        ROOM, "$ev2", "@ann:x", proposal("Residents | every 2nd tuesday 19:00 | for 4 times"), NOW
    )
    assert meeting.state == FIXED and meeting.start == datetime(2026, 12, 8, 19, tzinfo=UTC)
    with pytest.raises(ValueError, match="move single occurrences"):
        await store.move(meeting.id, datetime(2026, 12, 9, 19, tzinfo=UTC), NOW)
    jan = datetime(2027, 1, 12, 19, tzinfo=UTC)
    feb = datetime(2027, 2, 9, 19, tzinfo=UTC)
    assert await store.cancel_occurrence(meeting.id, jan, NOW) == 1
    assert await store.move_occurrence(meeting.id, feb, feb + timedelta(days=1), NOW) == 2
    changed = await store.get(meeting.id)
    assert changed is not None
    schedule = changed.schedule()
    assert schedule is not None and schedule.cancelled == {jan}
    assert [o.start for o in schedule.occurrences()] == [
        datetime(2026, 12, 8, 19, tzinfo=UTC),
        feb + timedelta(days=1),
        datetime(2027, 3, 9, 19, tzinfo=UTC),
    ]
    assert await store.active(datetime(2027, 3, 9, 19, 30, tzinfo=UTC)) == [changed]
    assert await store.active(datetime(2027, 3, 9, 20, 1, tzinfo=UTC)) == []


async def test_latest_ballot_per_person_wins_by_timestamp_not_arrival(db):
    store = MeetingStore(db)
    meeting, _ = await store.create(ROOM, "$ev1", "@ann:x", proposal(), NOW)
    assert await store.record_ballot(meeting.id, "@ann:x", {1: Y, 2: Y, 3: N}, 2000, "command")
    # an older poll response replayed after a gap changes nothing
    assert not await store.record_ballot(meeting.id, "@ann:x", {1: N, 2: N, 3: Y}, 1000, "poll")
    await store.record_ballot(meeting.id, "@bob:x", {1: M, 2: Y, 3: N}, 1500, "poll")
    ballots = await store.ballots(meeting.id)
    assert ballots == {"@ann:x": {1: Y, 2: Y, 3: N}, "@bob:x": {1: M, 2: Y, 3: N}}
    assert await store.record_ballot(meeting.id, "@ann:x", {1: N, 2: Y, 3: Y}, 3000, "poll")
    best = best_slot(tally(meeting.slots, await store.ballots(meeting.id)))
    assert best is not None and best.slot.number == 2 and best.slot.yes == ("@ann:x", "@bob:x")


async def test_rsvps_latest_wins_and_going_list(db):
    store = MeetingStore(db)
    meeting, _ = await store.create(ROOM, "$ev1", "@ann:x", proposal(), NOW)
    await store.set_rsvp(meeting.id, "@ann:x", Rsvp.GOING, 10)
    await store.set_rsvp(meeting.id, "@bob:x", Rsvp.GOING, 10)
    await store.set_rsvp(meeting.id, "@bob:x", Rsvp.NO, 20)
    assert not await store.set_rsvp(meeting.id, "@bob:x", Rsvp.GOING, 15)
    assert await store.rsvps(meeting.id) == {"@ann:x": Rsvp.GOING, "@bob:x": Rsvp.NO}
    assert await store.going(meeting.id) == ["@ann:x"]


async def test_a_reminder_is_claimed_once_and_an_unfinished_one_is_listed(tmp_path):
    db = await Database.open(tmp_path / "own.sqlite3")
    await db.migrate("meetings", MIGRATIONS)
    store = MeetingStore(db)
    records = RecordStore(db)
    meeting, _ = await store.create(ROOM, "$ev1", "@ann:x", proposal(), NOW)
    due = NOW + timedelta(days=2)
    assert await records.claim_reminder("M1/a/b/-60m", meeting.id, due, "on_time", NOW)
    assert not await records.claim_reminder("M1/a/b/-60m", meeting.id, due, "on_time", NOW)
    assert await records.claim_reminder("M1/a/b/-1440m", meeting.id, due, "skip", NOW)
    assert await records.unfinished_reminders() == [("M1/a/b/-60m", meeting.id, "on_time")]
    await records.finish_reminder("M1/a/b/-60m", "$sent")
    assert await records.unfinished_reminders() == []
    await db.close()
    reopened = await Database.open(tmp_path / "own.sqlite3")  # survives a restart
    keys = await RecordStore(reopened).reminder_keys([meeting.id])
    assert keys == {"M1/a/b/-60m", "M1/a/b/-1440m"}
    assert await RecordStore(reopened).reminder_keys([99]) == set()
    await reopened.close()


async def test_minutes_and_personal_zones(db):
    store, records = MeetingStore(db), RecordStore(db)
    meeting, _ = await store.create(ROOM, "$ev1", "@ann:x", proposal(), NOW)
    later = NOW + timedelta(days=10)
    await records.add_minutes(meeting.id, "@ann:x", "Skips on Saturday.\nBob brings bags.", later)
    (minutes,) = await records.minutes(meeting.id)
    assert minutes.text.endswith("Bob brings bags.") and minutes.posted_at == later
    assert await records.minutes_in_room_between(ROOM, NOW, later) == []
    assert await records.minutes_in_room_between(ROOM, later, later + timedelta(days=1)) == [
        minutes
    ]
    assert await records.user_zone("@ann:x") is None
    await records.set_user_zone("@ann:x", "Europe/Warsaw", NOW)
    await records.set_user_zone("@ann:x", "Europe/Paris", NOW)
    assert await records.user_zone("@ann:x") == "Europe/Paris"


async def test_export_then_forget_keeps_counts_and_drops_the_name(db, tmp_path):
    store, records = MeetingStore(db), RecordStore(db)
    meeting, _ = await store.create(ROOM, "$ev1", "@ann:x", proposal(), NOW)
    await store.record_ballot(meeting.id, "@ann:x", {1: Y, 2: M, 3: N}, 10, "command")
    await store.record_ballot(meeting.id, "@bob:x", {1: Y, 2: N, 3: N}, 10, "command")
    await store.set_rsvp(meeting.id, "@ann:x", Rsvp.GOING, 10)
    await records.add_minutes(meeting.id, "@ann:x", "Agreed the route", NOW)
    await records.set_user_zone("@ann:x", "Europe/Warsaw", NOW)
    exported = await export_person(db, "@ann:x")
    json.dumps(exported)  # JSON-ready
    assert exported["time_zone"]["timezone"] == "Europe/Warsaw"
    assert [a["answer"] for a in exported["availability"]] == ["yes", "ifneedbe", "no"]
    assert exported["rsvps"][0]["status"] == "going"
    assert exported["organised"][0]["meeting"] == "M-1"
    assert exported["minutes"][0]["text"] == "Agreed the route"
    before = tally(meeting.slots, await store.ballots(meeting.id))

    removed, anonymised = await forget_person(db, "@ann:x")
    assert removed == 1 and anonymised == 3 + 1 + 1 + 1
    after = tally(meeting.slots, await store.ballots(meeting.id))
    assert [(t.number, len(t.yes), len(t.maybe), t.no) for t in after.ranked] == [
        (t.number, len(t.yes), len(t.maybe), t.no) for t in before.ranked
    ]
    assert after.respondents == 2  # one stand-in for all of ann's answers in the meeting
    assert "@ann:x" not in await store.ballots(meeting.id)
    assert all(is_anonymous(p) for p in await store.rsvps(meeting.id))
    assert await store.going(meeting.id) == []  # stand-ins get no DMs
    assert await export_person(db, "@ann:x") == {
        "time_zone": None, "availability": [], "rsvps": [], "organised": [], "minutes": []
    }  # fmt: skip
    await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files = b"".join(path.read_bytes() for path in tmp_path.glob("db.sqlite3*"))
    assert b"@bob:x" in files  # the scan does see names that are kept
    assert b"@ann:x" not in files


async def test_queries_for_listing_deadlines_and_poll_responses(db):
    store = MeetingStore(db)
    here, _ = await store.create(ROOM, "$ev1", "@ann:x", proposal(), NOW)
    other, _ = await store.create(
        "!other:x", "$ev2", "@bob:x", proposal("Tea | tue 8 dec 15:00"), NOW
    )
    weekly, _ = await store.create(
        ROOM, "$ev3", "@ann:x", proposal("Garden | every monday 18:00"), NOW
    )
    await store.set_events(here.id, poll_event_id="$poll", table_event_id="$table")
    with pytest.raises(ValueError, match="unknown event columns"):
        await store.set_events(here.id, organiser="@evil:x")
    found = await store.by_poll_event("$poll")
    assert found is not None and found.id == here.id and found.table_event_id == "$table"
    assert await store.by_poll_event("$nothing") is None
    assert [m.id for m in await store.open_decisions()] == [here.id]
    assert [m.id for m in await store.fixed_in(ROOM, NOW)] == [weekly.id]
    assert [m.id for m in await store.in_rooms([ROOM, "!other:x"], NOW)] == [
        here.id, other.id, weekly.id
    ]  # fmt: skip
    assert await store.in_rooms([], NOW) == []
    far = NOW + timedelta(days=3650)
    assert [m.id for m in await store.active(far)] == [weekly.id]  # endless: never ends
