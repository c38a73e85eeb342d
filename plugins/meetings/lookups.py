"""Finding the meeting a command names and checking who may act on it; reading times."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from civicbot_plugins.meetings import render
from civicbot_plugins.meetings.models import CANCELLED, PROPOSED, Meeting
from civicbot_plugins.meetings.store import MeetingStore

from civicbot.api import (
    CommandError,
    Context,
    DateError,
    Role,
    clean_text,
    on_the_minute,
    parse_when,
)


async def meeting_for(store: MeetingStore, ctx: Context[Any], meeting_id: int) -> Meeting:
    """The meeting, if the sender may see it: asked in its room, or by a member elsewhere."""
    found = await store.get(meeting_id)
    if found is not None and found.room_id != ctx.room_id:
        if ctx.sender not in await ctx.plugin.rooms.joined_members(found.room_id):
            found = None
    if found is None:
        raise CommandError(
            f"I can't find M-{meeting_id} in any room you're in. {ctx.prefix}meetings lists "
            "the meetings here."
        )
    return found


async def meeting_to_manage(
    store: MeetingStore, ctx: Context[Any], meeting_id: int, verb: str
) -> Meeting:
    """The meeting, if the sender organised it or moderates its room."""
    found = await meeting_for(store, ctx, meeting_id)
    if ctx.sender != found.organiser and not await ctx.plugin.permissions.has(
        found.room_id, ctx.sender, Role.MODERATOR
    ):
        raise CommandError(
            f"Only the organiser of {found.label} or a moderator can {verb} it. To say "
            f"when you can, type {ctx.prefix}avail {found.label} 1y 2? 3n."
        )
    return found


async def fixed_to_manage(
    store: MeetingStore, ctx: Context[Any], meeting_id: int, verb: str
) -> Meeting:
    """As :func:`meeting_to_manage`, and the meeting has a time."""
    found = await meeting_to_manage(store, ctx, meeting_id, verb)
    if found.state == PROPOSED:
        raise CommandError(
            f"{found.label} has no time yet: fix one with {ctx.prefix}meet fix "
            f"{found.label} <number>."
        )
    if found.state == CANCELLED:
        raise CommandError(f"{found.label} was cancelled; propose it again with !meet.")
    return found


def not_open(ctx: Context[Any], meeting: Meeting) -> str:
    """Why a meeting takes no more availability answers, and what to type instead."""
    if meeting.state == CANCELLED:
        return f"{meeting.label} was cancelled. {ctx.prefix}meetings lists the others."
    return (
        f"{meeting.label} is already fixed. Say whether you're coming with "
        f"{ctx.prefix}rsvp {meeting.label} going, maybe or no; the organiser can move it "
        f"with {ctx.prefix}meet move {meeting.label} <new time>."
    )


def slot_text(meeting: Meeting, start: datetime, zone: ZoneInfo) -> str:
    return render.short_slot(meeting, start, zone, start)


async def read_when(text: str, zone: ZoneInfo, now: datetime) -> datetime:
    try:
        when = await asyncio.to_thread(parse_when, clean_text(text), zone, now)
    except DateError as exc:
        raise CommandError(f"{exc} (the new time)") from None
    return on_the_minute(when, now)


def one_date_of(meeting: Meeting, now: datetime) -> str:
    """The date of the meeting's next occurrence (``2027-01-12``), for an example that is
    always one of its own dates and never in the past; ``next tuesday`` when it has none."""
    schedule = meeting.schedule()
    upcoming = schedule.next_occurrence(now) if schedule is not None else None
    if upcoming is None:
        return "next tuesday"
    return upcoming.start.astimezone(schedule.zone).date().isoformat()


async def occurrence_on(ctx: Context[Any], meeting: Meeting, text: str, zone: ZoneInfo) -> datetime:
    """The original start of the occurrence on the date typed (``2026-12-08``)."""
    schedule = meeting.schedule()
    assert schedule is not None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        try:
            when = await asyncio.to_thread(parse_when, clean_text(text), zone, ctx.now)
        except DateError:
            raise CommandError(
                f"Give the date of the meeting to change like {one_date_of(meeting, ctx.now)} "
                f"({meeting.label} is {schedule.describe()})."
            ) from None
        day = when.astimezone(zone).date()
    original = schedule.original_on(day)
    if original is None or original in schedule.cancelled:
        raise CommandError(
            f"{meeting.label} has no meeting on {day:%a} {day.day} {day:%b} {day.year}; it "
            f"is {schedule.describe()}. Give one of its dates, like "
            f"{one_date_of(meeting, ctx.now)}."
        )
    return original
