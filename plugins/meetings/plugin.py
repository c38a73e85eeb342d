"""The meetings commands: ``!meet`` (``fix``, ``move``, ``cancel``), ``!avail``, ``!rsvp`` and more.

Thin handlers: they read the input with the pure functions in :mod:`parsing` and
:mod:`service`, store it, and hand the messages nobody typed (table edits, the deadline,
reminders) to :mod:`lifecycle`. Proposals are parsed in a worker thread: dateparser can take a
moment on text it cannot read, and the bot must keep answering others meanwhile.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Annotated, Any

from civicbot_plugins.meetings import lookups, render, views
from civicbot_plugins.meetings.config import MeetingsConfig
from civicbot_plugins.meetings.lifecycle import MeetingRunner
from civicbot_plugins.meetings.migrations import MIGRATIONS
from civicbot_plugins.meetings.models import CANCELLED, FIXED, PROPOSED, Meeting
from civicbot_plugins.meetings.parsing import MeetingInputError, parse_proposal
from civicbot_plugins.meetings.personal import export_person, forget_person
from civicbot_plugins.meetings.records import RecordStore
from civicbot_plugins.meetings.service import (
    Answer,
    AnswerError,
    Rsvp,
    numbered_slots,
    parse_availability,
    parse_rsvp,
    resolve_zone,
    slot_number,
)
from civicbot_plugins.meetings.store import MeetingStore

from civicbot.api import (
    CommandError,
    Context,
    DigestSection,
    EventKind,
    ForgetReport,
    ItemId,
    Plugin,
    PublicSection,
    Rest,
    clean_text,
    command,
    format_when,
    on,
    same_minute_or_later,
    send_notice,
)

MeetingId = Annotated[int, ItemId("M")]  # accepts M-3, m3 or 3
EXAMPLE = "!meet Litter pick planning | next tuesday 18:00 | next saturday 10am | for 90 minutes"
SUBCOMMANDS = {
    "fix": "meet fix M-3 2",
    "move": "meet move M-3 next thursday 19:00",
    "cancel": "meet cancel M-3",
}
CLEARS = ("clear", "reset", "none", "off", "room")


class MeetingsPlugin(Plugin[MeetingsConfig]):
    name = "meetings"
    description = "Find a time, fix it, add it to calendars, remind people, record the minutes."
    Config = MeetingsConfig
    templates = ("changed", "digest", "fixed", "list", "minutes", "personal", "proposed",
                 "reminder", "table")  # fmt: skip
    migrations = MIGRATIONS

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        self.store = MeetingStore(ctx.db)
        self.records = RecordStore(ctx.db)
        self.runner = MeetingRunner(ctx, self.store, self.records)
        self.calendars: views.Calendars | None = None  # the public feeds' .ics, made once each

    async def setup(self) -> None:
        await self.runner.start()

    async def room_replaced(self, old_room: str, new_room: str) -> None:
        """A room upgrade: meetings still being planned or coming up (their reminders are
        armed by id) move to the new room; the rest stay with the old room's history."""
        await self.ctx.db.execute(
            "UPDATE meetings_meetings SET room_id = ? WHERE room_id = ? "
            "AND state IN ('proposed', 'fixed')",
            (new_room, old_room),
        )

    async def caught_up(self) -> None:
        await self.runner.caught_up()

    # -- proposing -----------------------------------------------------------------------------
    @command(
        "meet",
        open_text=True,
        examples=(EXAMPLE, "!meet Residents' meeting | every 2nd tuesday 19:00 | at Church Hall"),
    )
    async def meet(self, ctx: Context[MeetingsConfig], title_and_times: Rest) -> None:
        """Propose a meeting: a title, then candidate times, split by | or on new lines.

        Optional parts: `for 90 minutes` (default 1 hour), `at <place or link>`, `decide by
        <when>` (the best time is then fixed automatically). A repeating meeting takes a rule
        instead of times: `every 2nd tuesday 19:00`, `every week on monday 18:30`, with
        `until <date>` or `for 6 times`; it is fixed at once."""
        meeting = await self.store.by_source(ctx.event.event_id)
        if meeting is None:
            text = clean_text(title_and_times)
            first = text.split(None, 1)[0].lower() if text.strip() else ""
            if first in SUBCOMMANDS and "|" not in text and "\n" not in text:
                raise CommandError(f"To {first} a meeting, type {ctx.prefix}{SUBCOMMANDS[first]}")
            zone = await ctx.timezone()
            try:
                proposal = await asyncio.to_thread(parse_proposal, text, zone, ctx.now)
            except MeetingInputError as exc:
                raise CommandError(str(exc)) from None
            meeting, _ = await self.store.create(
                ctx.room_id, ctx.event.event_id, ctx.sender, proposal, ctx.now,
                thread_root=ctx.event.thread_root,
            )  # fmt: skip
        if meeting.state == FIXED and meeting.announce_event_id is None:
            await self.runner.announce_fixed(meeting, ctx.out, reply_to=ctx.event.event_id)
        elif meeting.state == PROPOSED and meeting.table_event_id is None:
            await self._post(ctx, meeting)

    async def _post(self, ctx: Context[MeetingsConfig], meeting: Meeting) -> None:
        """The echo of every slot, the native poll, then the table (edited as answers come)."""
        zone, now = await ctx.timezone(), ctx.now
        values = {
            "meeting": meeting,
            "label": meeting.label,
            "slots": numbered_slots(meeting.slots, meeting.duration, zone, now),
            "place": render.place_text(meeting),
            "decide_by": format_when(meeting.decide_by, zone, now) if meeting.decide_by else "",
            "native": render.has_slot_polls(meeting),
        }
        # The proposal is the meeting's post: edited when it is fixed, moved or cancelled.
        reply_id = await ctx.reply(self.ctx.render("proposed", **values), item=meeting.label)
        if not reply_id:  # held back by the flood guard: nothing is posted
            return
        first_poll: str | None = None
        if render.has_slot_polls(meeting):
            for number, start in enumerate(meeting.slots, start=1):
                content = render.slot_poll_content(meeting, number, start, zone, now)
                if meeting.thread_root:
                    content["m.relates_to"] = {
                        "rel_type": "m.thread",
                        "event_id": meeting.thread_root,
                        "is_falling_back": True,
                        "m.in_reply_to": {"event_id": reply_id},
                    }
                poll_id = await ctx.out.event(ctx.room_id, render.START_TYPE, content)
                await self.store.add_slot_poll(meeting.id, number, poll_id)
                first_poll = first_poll or poll_id
        table = await self.runner.table_text(meeting)
        table_id = await send_notice(
            self.ctx, ctx.out, ctx.room_id, table, thread_root=meeting.thread_root
        )
        await self.store.set_events(meeting.id, poll_event_id=first_poll, table_event_id=table_id)
        if meeting.decide_by is not None:
            self.runner.arm_decision(meeting)

    # -- answering -----------------------------------------------------------------------------
    @command("avail", examples=("!avail M-3 1y 2? 3n", "!avail M-3 all", "!avail M-3 none"))
    async def avail(self, ctx: Context[MeetingsConfig], meeting: MeetingId, answers: Rest) -> None:
        """Say which times you can make: number then y (yes), ? (if need be) or n (no).

        Times you leave out count as no; `all` and `none` answer every time. Your latest
        answer counts, typed or given with the poll's buttons."""
        found = await lookups.meeting_for(self.store, ctx, meeting)
        if found.state != PROPOSED:
            raise CommandError(lookups.not_open(ctx, found))
        try:
            ballot = parse_availability(answers, len(found.slots))
        except AnswerError as exc:
            raise CommandError(str(exc).replace("M-3", found.label)) from None
        person = await self.runner.person(found.id, ctx.sender)
        await self.store.record_ballot(found.id, person, ballot, ctx.event.ts, "command")
        await self.runner.update_table(found, ctx.out)
        yes = [str(n) for n, a in sorted(ballot.items()) if a is Answer.YES]
        maybe = [str(n) for n, a in sorted(ballot.items()) if a is Answer.MAYBE]
        parts = [f"yes {', '.join(yes)}"] if yes else []
        parts += [f"if need be {', '.join(maybe)}"] if maybe else []
        said = "; ".join(parts) if parts else "none of the times"
        await ctx.reply(f"Thanks, noted for {found.label}: {said}.")

    @command("rsvp", examples=("!rsvp M-3 going", "!rsvp M-3 maybe", "!rsvp M-3 no"))
    async def rsvp(self, ctx: Context[MeetingsConfig], meeting: MeetingId, answer: Rest) -> None:
        """Say whether you're coming to a fixed meeting: going, maybe or no.

        People going get the reminders by direct message too."""
        found = await lookups.meeting_for(self.store, ctx, meeting)
        if found.state == PROPOSED:
            raise CommandError(
                f"{found.label} has no time yet, so there's nothing to answer. Say when you can "
                f"with {ctx.prefix}avail {found.label} 1y 2? 3n; once it's fixed, type "
                f"{ctx.prefix}rsvp {found.label} going."
            )
        if found.state == CANCELLED:
            raise CommandError(f"{found.label} was cancelled. {ctx.prefix}meetings lists others.")
        try:
            status = parse_rsvp(answer)
        except AnswerError as exc:
            raise CommandError(str(exc).replace("M-3", found.label)) from None
        person = await self.runner.person(found.id, ctx.sender)
        await self.store.set_rsvp(found.id, person, status, ctx.event.ts)
        # A personal zone (!tz) is for what I write to the person directly; in a room everyone
        # reads the room's zone.
        if await ctx.is_direct():
            zone = await self.runner.zone_of(ctx.sender, found.room_id)
        else:
            zone = await self.ctx.timezone(found.room_id)
        when = render.when_text(found, zone, ctx.now)
        if status is Rsvp.GOING:
            reply = (
                f"See you there: {found.label} {found.title}, {when}. I've sent you the "
                "calendar file by direct message, and I'll remind you there."
            )
            # The .ics goes to each person who is going, never to the room (a file in a room
            # notifies every member).
            if found.schedule() is not None:
                data, name = await self.runner.calendar_file(found, ctx.now)
                await ctx.dm_file(ctx.sender, data, name, "text/calendar")
        elif status is Rsvp.MAYBE:
            reply = f"Noted: maybe for {found.label} {found.title}, {when}."
        else:
            reply = f"Noted: you're not coming to {found.label} {found.title}."
        await ctx.reply(reply)

    # -- fixing and changing -------------------------------------------------------------------
    @command("meet fix", parent=meet, examples=("!meet fix M-3 2",))
    async def fix(self, ctx: Context[MeetingsConfig], meeting: MeetingId, time: str) -> None:
        """Fix a proposed meeting at one of its times (its organiser or a moderator)."""
        found = await lookups.meeting_to_manage(self.store, ctx, meeting, "fix")
        if found.state == FIXED and found.announce_event_id is None and found.fixed_by:
            # Fixed before a crash, not yet announced: finish with the same transaction ids.
            await self.runner.announce_fixed(found, ctx.out, reply_to=ctx.event.event_id)
            return
        if found.state != PROPOSED:
            raise CommandError(lookups.not_open(ctx, found))
        try:
            number = slot_number(time, len(found.slots))
        except AnswerError as exc:
            raise CommandError(str(exc).replace("M-3", found.label)) from None
        async with self.runner.lock(found.id):
            if not await self.store.fix(found.id, number, ctx.sender, ctx.now):
                raise CommandError(f"{found.label} has just been fixed or cancelled.")
        fixed = await self.store.get(found.id)
        assert fixed is not None
        await self.runner.announce_fixed(fixed, ctx.out, reply_to=ctx.event.event_id)

    @command(
        "meet move",
        parent=meet,
        examples=(
            "!meet move M-3 next thursday 19:00",
            "!meet move M-3 next tuesday to wed 19:00",
        ),
    )
    async def move(self, ctx: Context[MeetingsConfig], meeting: MeetingId, new_time: Rest) -> None:
        """Move a fixed meeting; for a repeating one, move one date: `<date> to <new time>`."""
        found = await lookups.fixed_to_manage(self.store, ctx, meeting, "move")
        zone = await self.ctx.timezone(found.room_id)
        schedule = found.schedule()
        assert schedule is not None
        values: dict[str, Any] = {}
        if schedule.recurrence is not None:
            parts = re.split(r"\s+to\s+", new_time.strip(), maxsplit=1)
            if len(parts) != 2:
                raise CommandError(
                    f"{found.label} repeats: move one date at a time, like {ctx.prefix}meet "
                    f"move {found.label} {lookups.one_date_of(found, ctx.now)} to <new time>"
                )
            original = await lookups.occurrence_on(ctx, found, parts[0], zone)
            start = await lookups.read_when(parts[1], zone, ctx.now)
            await self.store.move_occurrence(found.id, original, start, ctx.now)
            values = {
                "occurrence_moved": True,
                "occurrence": lookups.slot_text(found, original, zone),
                "new_time": lookups.slot_text(found, start, zone),
            }
        else:
            start = await lookups.read_when(new_time, zone, ctx.now)
            await self.store.move(found.id, start, ctx.now)
        await self._changed(ctx, found.id, values)

    @command(
        "meet cancel", parent=meet, examples=("!meet cancel M-3", "!meet cancel M-3 next tuesday")
    )
    async def cancel(
        self, ctx: Context[MeetingsConfig], meeting: MeetingId, date_of_one: Rest | None = None
    ) -> None:
        """Cancel a meeting (its organiser or a moderator); give a date to cancel only that one
        of a repeating meeting."""
        found = await lookups.meeting_to_manage(self.store, ctx, meeting, "cancel")
        if found.state == CANCELLED:
            raise CommandError(f"{found.label} is already cancelled.")
        zone = await self.ctx.timezone(found.room_id)
        schedule = found.schedule()
        if date_of_one and date_of_one.strip():
            if schedule is None or schedule.recurrence is None:
                raise CommandError(
                    f"{found.label} happens once: cancel it with {ctx.prefix}meet cancel "
                    f"{found.label}"
                )
            original = await lookups.occurrence_on(ctx, found, date_of_one, zone)
            await self.store.cancel_occurrence(found.id, original, ctx.now)
            occurrence = lookups.slot_text(found, original, zone)
            values = {"occurrence_cancelled": True, "occurrence": occurrence}
            await self._changed(ctx, found.id, values)
            return
        if not await self.store.cancel(found.id, ctx.now):
            raise CommandError(f"{found.label} is already cancelled.")
        self.ctx.jobs.cancel(f"decide:{found.id}")
        if found.state == PROPOSED:
            await self.runner.end_polls(found, ctx.out, "is cancelled")
        await self._changed(ctx, found.id, {"whole_cancelled": True}, cancelled=True)

    async def _changed(
        self, ctx: Context[MeetingsConfig], meeting_id: int, values: dict[str, Any],
        cancelled: bool = False,
    ) -> None:  # fmt: skip
        changed = await self.store.get(meeting_id)
        assert changed is not None
        zone = await self.ctx.timezone(changed.room_id)
        defaults = {"whole_cancelled": False, "occurrence_cancelled": False,
                    "occurrence_moved": False, "occurrence": "", "new_time": "",
                    "when": render.when_text(changed, zone, ctx.now)}  # fmt: skip
        await self.runner.send_change(changed, ctx.out, {**defaults, **values}, cancelled)
        await self.runner.rearm(meeting_id)
        if ctx.room_id != changed.room_id:
            await ctx.reply(f"Done: {changed.label}'s room and everyone going have been told.")

    # -- listing, minutes, zones ---------------------------------------------------------------
    @command("meetings")
    async def meetings(self, ctx: Context[MeetingsConfig]) -> None:
        """List upcoming meetings and open scheduling questions here (in a DM: all your rooms)."""
        zone = await self.runner.zone_of(ctx.sender, ctx.room_id)
        direct = await ctx.is_direct()
        if direct:
            found = [*await self.store.active(ctx.now), *await self.store.proposed_all()]
            members: dict[str, bool] = {}
            for meeting in found:
                if meeting.room_id not in members:
                    joined = await self.ctx.rooms.joined_members(meeting.room_id)
                    members[meeting.room_id] = ctx.sender in joined
            found = [m for m in found if members[m.room_id]]
        else:
            found = [*await self.store.fixed_in(ctx.room_id, ctx.now),
                     *await self.store.proposed_in(ctx.room_id)]  # fmt: skip
        found.sort(key=lambda m: views.soonest(m, ctx.now))
        names = {}
        if direct:  # rooms by the name residents know them by, never a raw room id
            for room_id in {m.room_id for m in found}:
                names[room_id] = await self.ctx.rooms.display_name(room_id)
        rows = [views.list_row(m, zone, ctx.now, names.get(m.room_id, "")) for m in found]
        fixed = [row for row, m in zip(rows, found, strict=True) if m.state == FIXED]
        proposed = [row for row, m in zip(rows, found, strict=True) if m.state == PROPOSED]
        await ctx.reply(self.ctx.render("list", fixed=fixed, proposed=proposed))

    @command("minutes", examples=("!minutes M-3 We agreed the litter pick for next saturday.",))
    async def minutes(self, ctx: Context[MeetingsConfig], meeting: MeetingId, text: Rest) -> None:
        """After the meeting, record what was decided (several lines allowed; organiser or a
        moderator). It is posted in the meeting's thread and shown in the digest."""
        found = await lookups.fixed_to_manage(self.store, ctx, meeting, "record the minutes of")
        if found.start is not None and not same_minute_or_later(found.start, ctx.now):
            when = render.when_text(found, await ctx.timezone(), ctx.now)
            raise CommandError(
                f"{found.label} hasn't happened yet ({when}); post the minutes afterwards."
            )
        cleaned = clean_text(text).strip()
        if not cleaned:
            raise CommandError(f"Write what was decided: {ctx.prefix}minutes {found.label} …")
        root = found.announce_event_id or found.thread_root
        rendered = self.ctx.render("minutes", meeting=found, label=found.label, text=cleaned)
        event_id = await send_notice(self.ctx, ctx.out, found.room_id, rendered,
                                     thread_root=root, on_behalf_of=ctx.sender)  # fmt: skip
        if not any(m.event_id == event_id for m in await self.records.minutes(found.id)):
            await self.records.add_minutes(found.id, ctx.sender, cleaned, ctx.now,
                                           event_id=event_id)  # fmt: skip
        if ctx.room_id != found.room_id or ctx.event.thread_root != root:
            await ctx.reply(f"Recorded the minutes of {found.label} in its thread.")

    @command("tz", examples=("!tz Europe/Warsaw", "!tz", "!tz clear"))
    async def tz(self, ctx: Context[MeetingsConfig], zone: Rest | None = None) -> None:
        """Set your own time zone, used when I write to you directly (`!tz clear` to unset)."""
        wanted = clean_text(zone or "").strip()
        room_zone = await ctx.timezone()
        if not wanted:
            mine = await self.records.user_zone(ctx.sender)
            if mine:
                raise CommandError(f"Your time zone is {mine}. Change it with {ctx.prefix}tz "
                                   f"Europe/Warsaw, or {ctx.prefix}tz clear.")  # fmt: skip
            raise CommandError(f"You haven't set a time zone; I use the room's, {room_zone.key}. "
                               f"Set yours with {ctx.prefix}tz Europe/Warsaw")  # fmt: skip
        if wanted.lower() in CLEARS:
            await self.records.clear_user_zone(ctx.sender)
            await ctx.reply(f"Done: I'll show you times in each room's zone ({room_zone.key} here)")
            return
        try:
            found = resolve_zone(wanted)
        except AnswerError as exc:
            raise CommandError(str(exc)) from None
        await self.records.set_user_zone(ctx.sender, found.key, ctx.now)
        local = ctx.now.astimezone(found)
        await ctx.reply(f"Got it: I'll show you times in {found.key} (it's {local:%H:%M} there "
                        "now) in !meetings and when I write to you directly.")  # fmt: skip

    # -- votes given with the poll's buttons ---------------------------------------------------
    @on(EventKind.POLL_RESPONSE)
    async def on_response(self, ctx: Context[MeetingsConfig]) -> None:
        await self.runner.on_response(ctx.event, ctx.out)

    # -- hooks for the rest of civicbot --------------------------------------------------------
    async def digest_section(
        self, room_id: str, since: datetime, until: datetime
    ) -> DigestSection | None:
        zone = await self.ctx.timezone(room_id)
        values = await views.digest_values(self.store, self.records, room_id, since, until, zone)
        if values is None:
            return None
        rendered = self.ctx.render("digest", **values)
        return DigestSection("Meetings", rendered.text, rendered.html, order=30)

    async def personal_digest_section(
        self, user_id: str, since: datetime, until: datetime
    ) -> DigestSection | None:
        rows = await views.personal_rows(self.store, self.records, self.ctx, user_id, until)
        if not rows:
            return None
        rendered = self.ctx.render("personal", rows=rows)
        return DigestSection("Your meetings", rendered.text, rendered.html, order=30)

    async def public_section(self, room_id: str) -> PublicSection | None:
        now = self.ctx.clock.now()
        return await views.public_section(self.store, room_id, self._calendars(), now)

    async def personal_calendar(self, user_id: str) -> list[bytes] | None:
        now = self.ctx.clock.now()
        files = await views.personal_calendar(self.store, user_id, self._calendars(), now)
        return files or None

    def _calendars(self) -> views.Calendars:
        if self.calendars is None or self.calendars.server != self.runner.server:
            self.calendars = views.Calendars(self.runner.server)
        return self.calendars

    async def export_user_data(self, user_id: str) -> dict[str, Any] | None:
        data = await export_person(self.ctx.db, user_id)
        return data if any(data.values()) else None

    async def forget_user(self, user_id: str) -> ForgetReport | None:
        removed, anonymised = await forget_person(self.ctx.db, user_id, self.runner.stand_in)
        if not (removed or anonymised):
            return None
        note = ("Meeting counts are kept; your name is removed from availability, RSVPs and "
                "minutes. Poll taps are room events: a moderator can redact them.")  # fmt: skip
        return ForgetReport(removed=removed, anonymised=anonymised, notes=[note])
