"""Power levels read as the spec says, room version 12 creators included."""

from civicbot.policy.permissions import PowerLevels, Role, role_satisfied

V12_CREATE = {
    "sender": "@founder:hs",
    "type": "m.room.create",
    "content": {"room_version": "12", "additional_creators": ["@cofounder:hs"]},
}
V10_CREATE = {
    "sender": "@founder:hs",
    "type": "m.room.create",
    "content": {"room_version": "10", "creator": "@founder:hs"},
}


def test_room_v12_creators_outrank_everyone_without_being_listed():
    levels = PowerLevels.from_state({"users": {"@mod:hs": 50}}, V12_CREATE)
    assert levels.level("@founder:hs") > 100
    assert levels.level("@cofounder:hs") > 100
    assert levels.level("@mod:hs") == 50
    assert levels.level("@someone:hs") == 0


def test_older_rooms_use_the_listed_levels_only():
    levels = PowerLevels.from_state({"users": {"@founder:hs": 100}, "users_default": 5}, V10_CREATE)
    assert levels.level("@founder:hs") == 100
    assert levels.level("@someone:hs") == 5


def test_no_power_levels_event_gives_the_creator_100():
    assert PowerLevels.from_state(None, V10_CREATE).level("@founder:hs") == 100


def test_garbage_levels_do_not_crash():
    levels = PowerLevels.from_state({"users": {"@a:hs": "fifty"}, "users_default": None}, None)
    assert levels.level("@a:hs") == 0


def test_room_notification_level():
    levels = PowerLevels.from_state(
        {"users": {"@mod:hs": 50, "@founder:hs": 100}, "notifications": {"room": 75}}, V10_CREATE
    )
    assert not levels.can_notify_room("@mod:hs")
    assert levels.can_notify_room("@founder:hs")


def test_roles_from_levels_and_grants():
    levels = {Role.MODERATOR: 50, Role.ADMIN: 100}
    assert role_satisfied(Role.EVERYONE, 0, set(), levels)
    assert role_satisfied(Role.MODERATOR, 50, set(), levels)
    assert not role_satisfied(Role.MODERATOR, 49, set(), levels)
    assert role_satisfied(Role.MODERATOR, 0, {"moderator"}, levels)
    assert role_satisfied("councillor", 0, {"councillor"}, levels)
    assert role_satisfied("councillor", 50, set(), levels)  # moderators can stand in
    assert not role_satisfied("councillor", 10, set(), {**levels, "councillor": 20})
    assert role_satisfied("councillor", 20, set(), {**levels, "councillor": 20})
    assert role_satisfied(Role.MODERATOR, 0, {"admin"}, levels)
    assert role_satisfied(Role.ADMIN, float("inf"), set(), levels)
