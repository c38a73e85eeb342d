"""Token buckets without Matrix: the flood guard's verdicts and the send pacer's delays."""

from __future__ import annotations

import asyncio

from civicbot.policy.limits import (
    Decision,
    FloodGuard,
    FloodLimits,
    SendPacer,
    TokenBucket,
    Verdict,
    describe_seconds,
    flood_notice,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def guard(limits: FloodLimits, moderators: frozenset[str] = frozenset()):
    clock = Clock()

    async def limits_for(room_id: str) -> FloodLimits:
        return limits

    async def exempt(room_id: str, user_id: str) -> bool:
        return user_id in moderators

    return FloodGuard(limits_for, exempt, clock), clock


def test_bucket_refills_at_its_rate_up_to_its_capacity():
    bucket = TokenBucket(2, 0.5, now=0)
    assert bucket.take(0) and bucket.take(0)
    assert not bucket.take(0)
    assert not bucket.take(1.9)
    assert bucket.take(2.0)
    assert bucket.is_full(1000)
    assert bucket.tokens == 2  # never more than the capacity


def test_bucket_reservations_queue_up():
    bucket = TokenBucket(1, 2.0, now=0)
    assert bucket.reserve(0) == 0
    assert bucket.reserve(0) == 0.5
    assert bucket.reserve(0) == 1.0


async def test_a_flooder_gets_one_notice_then_silence_then_a_fresh_start():
    flood, clock = guard(FloodLimits(person_burst=3, person_per_minute=6, cooldown_seconds=60))
    verdicts = [(await flood.admit("!r", "@ann:hs", f"$e{i}")).verdict for i in range(100)]
    assert verdicts[:3] == [Verdict.ALLOW] * 3
    assert verdicts[3] is Verdict.NOTICE
    assert set(verdicts[4:]) == {Verdict.DROP}
    clock.now += 59
    assert (await flood.admit("!r", "@ann:hs", "$late")).verdict is Verdict.DROP
    clock.now += 1
    assert (await flood.admit("!r", "@ann:hs", "$after")).allowed


async def test_one_persons_flood_leaves_others_alone():
    flood, _ = guard(FloodLimits(person_burst=2, room_burst=0))
    for i in range(10):
        await flood.admit("!r", "@ann:hs", f"$a{i}")
    assert (await flood.admit("!r", "@bob:hs", "$b")).allowed
    assert (await flood.admit("!other", "@ann:hs", "$c")).allowed  # per room


async def test_a_whole_room_can_be_over_its_limit_but_moderators_still_get_through():
    flood, _ = guard(FloodLimits(person_burst=0, room_burst=3), moderators=frozenset({"@mod:hs"}))
    people = [f"@p{i}:hs" for i in range(10)]
    verdicts = [(await flood.admit("!r", p, f"$e{i}")) for i, p in enumerate(people)]
    assert [d.verdict for d in verdicts[:4]] == [Verdict.ALLOW] * 3 + [Verdict.NOTICE]
    assert verdicts[3].scope == "room"
    assert {d.verdict for d in verdicts[4:]} == {Verdict.DROP}
    assert (await flood.admit("!r", "@mod:hs", "$m")).allowed


async def test_a_moderator_emptying_the_room_bucket_does_not_swallow_the_notice():
    flood, _ = guard(FloodLimits(person_burst=0, room_burst=1), moderators=frozenset({"@mod:hs"}))
    assert (await flood.admit("!r", "@ann:hs", "$1")).allowed
    assert (await flood.admit("!r", "@mod:hs", "$2")).allowed
    assert (await flood.admit("!r", "@bob:hs", "$3")).verdict is Verdict.NOTICE


async def test_a_verdict_is_given_once_per_event():
    flood, _ = guard(FloodLimits(person_burst=1))
    assert (await flood.admit("!r", "@ann:hs", "$1")).allowed
    for _ in range(5):  # a command that answers five times is charged once
        assert (await flood.admit("!r", "@ann:hs", "$1")).allowed
    assert (await flood.admit("!r", "@ann:hs", "$2")).verdict is Verdict.NOTICE


async def test_zero_bursts_switch_the_limits_off():
    flood, _ = guard(FloodLimits(person_burst=0, room_burst=0, everywhere_burst=0))
    for i in range(500):
        assert (await flood.admit("!r", "@ann:hs", f"$e{i}")).allowed


async def test_many_idle_people_are_pruned():
    flood, clock = guard(FloodLimits(person_burst=5, room_burst=0))
    for i in range(6000):
        await flood.admit("!r", f"@p{i}:hs", "")
    clock.now += 3600
    await flood.admit("!r", "@last:hs", "")
    assert len(flood._people) < 10


async def test_many_active_people_are_not_swept_on_every_command():
    """Over 5,000 people active at once, each command swept the whole table for idle ones
    (6,000 commands took 7 s): now a sweep comes when the table doubles, or a minute on."""
    flood, clock = guard(FloodLimits(person_burst=5, room_burst=0))
    sweeps: list[int] = []
    swept = flood._swept

    def counted(table: str, left: int, now: float) -> None:
        sweeps.append(left)
        swept(table, left, now)

    flood._swept = counted  # type: ignore[method-assign]
    for i in range(12_000):
        await flood.admit("!r", f"@p{i}:hs", "")
    # Two buckets a person (this room's and everywhere's): 24,000, none of them idle, swept
    # each time the table doubled, not 19,000 times.
    assert sweeps == [5_002, 10_006, 20_014]
    clock.now += 61
    await flood.admit("!r", "@next:hs", "")
    assert len(sweeps) == 4  # a minute on: swept again, whatever its size


def test_notices_are_friendly_and_say_how_long():
    person = flood_notice(Decision(Verdict.NOTICE, "person", 60), "!")
    assert "a minute" in person and "!help" in person
    room = flood_notice(Decision(Verdict.NOTICE, "room", 300), "!")
    assert "5 minutes" in room and "Moderators" in room
    assert describe_seconds(45) == "45 seconds"
    assert describe_seconds(3600) == "an hour"


async def test_pacer_lets_a_burst_through_then_spaces_sends_and_never_drops_one():
    clock, slept = Clock(), []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    pacer = SendPacer(burst=3, per_second=2, clock=clock, sleep=sleep)
    for _ in range(7):
        await pacer.wait("!r")
    assert slept == [0.5, 0.5, 0.5, 0.5]
    await pacer.wait("!other")  # each room has its own bucket
    assert len(slept) == 4


async def test_concurrent_sends_keep_their_order():
    clock, order = Clock(), []

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds / 1000)  # keep the test fast; order is what matters

    pacer = SendPacer(burst=1, per_second=10, clock=clock, sleep=sleep)

    async def send(n: int) -> None:
        await pacer.wait("!r")
        order.append(n)

    await asyncio.gather(*(send(n) for n in range(6)))
    assert order == list(range(6))


def test_pacing_off_and_reconfigured():
    pacer = SendPacer(burst=1, per_second=0, clock=Clock())
    assert all(pacer.delay("!r") == 0 for _ in range(100))
    pacer.configure(burst=2, per_second=1)
    assert [pacer.delay("!s") for _ in range(3)] == [0, 0, 1.0]
