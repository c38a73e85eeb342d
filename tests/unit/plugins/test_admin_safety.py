"""Floods and pings: the bot is never flooded into answering, never floods a room itself, and
never pings the room (or many people) for someone who could not do so themselves."""

from __future__ import annotations

from datetime import timedelta

from civicbot.policy.permissions import MAX_PLAIN_MENTIONS, WORD_JOINER
from civicbot.scheduling.clock import FakeClock
from civicbot.testing.harness import MODERATOR, BotHarness
from tests.unit.plugins.test_admin import ANN, BOB, BOSS, ask, harness, plugin_classes, staff_room

APOLOGY = "Sorry, something went wrong"


def answers_to(h: BotHarness, room: str, event_ids: set[str]) -> list[str]:
    return [
        s.body
        for s in h.transport.sent
        if s.room_id == room
        and s.content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") in event_ids
    ]


# -- inbound floods ------------------------------------------------------------------------------
async def test_a_flood_of_100_commands_gets_the_burst_then_one_notice(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        flood = {(await h.say(room, ANN, "!ping")).event_id for _ in range(100)}
        answers = answers_to(h, room, flood)
        assert len(answers) == 8 + 1
        assert all(a.startswith("Pong!") for a in answers[:8])
        assert answers[8].startswith("That's a lot of commands at once!")
        assert "a minute" in answers[8]
        assert "Pong" in await ask(h, room, BOB, "!ping")  # others are not held back
        h.clock.advance(timedelta(seconds=61))
        assert "Pong" in await ask(h, room, ANN, "!ping")  # and the cool-down ends


async def test_refusals_typos_and_usage_errors_count_towards_a_flood_too(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        texts = ["!config council.style long", "!pnig", "!role", "!say"] * 25
        flood = {(await h.say(room, ANN, text)).event_id for text in texts}
        answers = answers_to(h, room, flood)
        assert len(answers) == 9
        assert answers[-1].startswith("That's a lot of commands at once!")
        assert not any(APOLOGY in a for a in answers)


async def test_a_room_wide_flood_gets_one_notice_and_moderators_still_get_through(tmp_path):
    async with harness(tmp_path, limits={"room_burst": 5}) as h:
        people = [f"@p{i}:test" for i in range(20)]
        room = h.room(members=people)
        flood = {(await h.say(room, p, "!ping")).event_id for p in people}
        answers = answers_to(h, room, flood)
        assert len(answers) == 6
        assert answers[-1].startswith("This room is sending me more commands")
        assert "Pong" in await ask(h, room, MODERATOR, "!ping")


async def test_moderators_tune_their_rooms_limits(tmp_path):
    # The operator's limit across rooms is off here: this is about what a room decides.
    limits = {"sends_per_second": 0, "everywhere_burst": 0}
    async with harness(tmp_path, limits=limits) as h:
        room, other = staff_room(h), staff_room(h)
        assert "Done:" in await ask(h, room, MODERATOR, "!config limits.person_burst 2")
        flood = {(await h.say(room, ANN, "!ping")).event_id for _ in range(5)}
        assert len(answers_to(h, room, flood)) == 3
        flood = {(await h.say(other, ANN, "!ping")).event_id for _ in range(5)}
        assert len(answers_to(h, other, flood)) == 5
        assert "Done:" in await ask(h, room, MODERATOR, "!config limits.person_burst 0")
        h.clock.advance(timedelta(minutes=5))
        flood = {(await h.say(room, ANN, "!ping")).event_id for _ in range(30)}
        assert len(answers_to(h, room, flood)) == 30


# -- outbound pacing -----------------------------------------------------------------------------
async def test_the_bots_own_sends_are_paced_per_room_and_none_is_dropped(tmp_path):
    clock = RecordingClock()
    limits = {"send_burst": 3, "sends_per_second": 2}
    h = await BotHarness.start(tmp_path, plugin_classes(), clock=clock, limits=limits)
    try:
        room = staff_room(h)
        event = await h.say(room, ANN, "!chatty")
        assert answers_to(h, room, {event.event_id}) == [f"part {n}" for n in range(5)]
        assert clock.slept == [0.5, 0.5]
    finally:
        await h.close()


class RecordingClock(FakeClock):
    """Sleeps as the fake clock does, and remembers for how long."""

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await super().sleep(seconds)


# -- pings ---------------------------------------------------------------------------------------
async def test_a_resident_cannot_make_the_bot_ping_the_room_in_any_letter_case(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        await h.say(room, ANN, "!shout @room and @ROOM and @Room: party!")
        sent = h.transport.sent[-1]
        assert sent.content["m.mentions"] == {}
        assert "@room" not in sent.body.lower()
        assert (
            sent.body == f"@{WORD_JOINER}room and @{WORD_JOINER}ROOM and @{WORD_JOINER}Room: party!"
        )


async def test_someone_who_may_ping_the_room_can(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        h.clock.advance(timedelta(seconds=10))
        await h.say(room, MODERATOR, "!shout @room meeting now")  # notifications.room is 50
        assert h.transport.sent[-1].content["m.mentions"] == {"room": True}
        assert h.transport.sent[-1].body == "@room meeting now"


async def test_mentioning_many_people_needs_the_power_to_ping_the_room(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        few = " ".join(f"@p{i}:test" for i in range(MAX_PLAIN_MENTIONS))
        await h.say(room, ANN, f"!say {few}")
        assert len(h.transport.sent[-1].content["m.mentions"]["user_ids"]) == MAX_PLAIN_MENTIONS
        many = " ".join(f"@p{i}:test" for i in range(MAX_PLAIN_MENTIONS + 1))
        await h.say(room, ANN, f"!say {many}")
        sent = h.transport.sent[-1]
        assert sent.content["m.mentions"] == {}
        assert "@p0:test" not in sent.body and f"@{WORD_JOINER}p0:test" in sent.body
        h.clock.advance(timedelta(seconds=10))
        await h.say(room, BOSS, f"!say {many}")
        assert len(h.transport.sent[-1].content["m.mentions"]["user_ids"]) == 11


async def test_raw_mentions_smuggled_in_extra_content_are_checked_too(tmp_path):
    from civicbot.core.context import Context
    from civicbot.core.events import Message

    async with harness(tmp_path) as h:
        room = staff_room(h)
        event = await h.say(room, ANN, "hello")
        plugin = h.bot.plugins["council"]
        config = await h.bot.room_settings.get(room, "council")
        ctx = Context(event, plugin.ctx, config, h.bot._context(event, plugin, config).out)
        message = Message("@room hi", extra={"m.mentions": {"room": True}})
        await ctx.send_message(room, message)
        assert h.transport.sent[-1].content["m.mentions"] == {}


async def test_scheduled_sends_ping_only_on_behalf_of_someone_who_may(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        council = h.bot.plugins["council"].ctx
        await council.send(room, "@room bins tonight", key="reminder:1", mention_room=True)
        assert h.transport.sent[-1].content["m.mentions"] == {}
        assert "@room" not in h.transport.sent[-1].body
        await council.send(
            room, "@room bins tonight", key="reminder:2", mention_room=True, on_behalf_of=ANN
        )
        assert h.transport.sent[-1].content["m.mentions"] == {}
        await council.send(
            room, "@room bins tonight", key="reminder:3", mention_room=True, on_behalf_of=BOSS
        )
        assert h.transport.sent[-1].content["m.mentions"] == {"room": True}


async def test_pings_are_checked_against_the_room_they_go_to(tmp_path):
    from civicbot.core.context import Context
    from civicbot.core.events import Message

    async with harness(tmp_path) as h:
        room = staff_room(h)  # ANN has no power here
        ruled = h.room(members=[ANN], power={ANN: 100})  # ...but rules this one
        event = await h.say(ruled, ANN, "hello")
        plugin = h.bot.plugins["council"]
        config = await h.bot.room_settings.get(ruled, "council")
        ctx = Context(event, plugin.ctx, config, h.bot._context(event, plugin, config).out)
        await ctx.send_message(room, Message("@room hi", mention_room=True))
        assert h.transport.sent[-1].room_id == room
        assert h.transport.sent[-1].content["m.mentions"] == {}


async def test_asking_to_be_forgotten_does_not_reset_a_rate_limit(tmp_path):
    """Found in review: !forget me dropped the sender's buckets, so every eighth command a
    flooder could start afresh (a moderator got 175 of 175 answers)."""
    for who in (ANN, MODERATOR):
        async with harness(tmp_path / who.strip("@:")) as h:
            room = staff_room(h)
            pongs = 0
            for i in range(64):
                event = await h.say(room, who, "!forget me" if i % 8 == 7 else "!ping")
                pongs += sum("Pong" in text for text in answers_to(h, room, {event.event_id}))
            assert pongs < 8, who


async def test_no_setting_rate_limits_a_moderator_out_of_changing_it_back(tmp_path):
    async with harness(tmp_path) as h:
        room = staff_room(h)
        assert (await ask(h, room, MODERATOR, "!config limits.person_burst 1")).startswith("Done")
        refused = await ask(h, room, MODERATOR, "!config limits.person_per_minute 0.000001")
        assert not refused.startswith("Done")
        for _ in range(5):  # no time passes between these
            await h.say(room, MODERATOR, "!config limits.person_burst")
        reply = await ask(h, room, MODERATOR, "!config reset limits.person_burst")
        assert "back to the default" in reply


async def test_one_persons_limit_holds_across_rooms(tmp_path):
    """Found in review: the limit was per person per room, so twelve !pings in each of five
    rooms got forty answers; the bot may be invited to any number of rooms."""
    async with harness(tmp_path) as h:
        rooms = [h.room(members=[ANN]) for _ in range(5)]
        answered = 0
        for room in rooms:
            for _ in range(12):
                event = await h.say(room, ANN, "!ping")
                answered += sum("Pong" in t for t in answers_to(h, room, {event.event_id}))
        assert answered <= 24
