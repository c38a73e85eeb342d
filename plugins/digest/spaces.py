"""Which rooms a space-wide digest covers: the rooms of the spaces (the bot is in) that hold
the asking room, which the bot has joined and which anyone may read.

A private room's business must not surface in another room: a child room goes in only when
its join rule is ``public``, or ``restricted`` to members of that very space (anyone there
could join and read it). The others are counted, not described.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SPACE_CHILD = "m.space.child"
SPACE_PARENT = "m.space.parent"


@dataclass(frozen=True)
class SpaceRooms:
    space_id: str
    name: str
    rooms: list[str]
    left_out: int


def readable_in_space(join_rules: dict[str, Any] | None, space_id: str) -> bool:
    rule = (join_rules or {}).get("join_rule")
    if rule == "public":
        return True
    if rule in ("restricted", "knock_restricted"):
        allow = (join_rules or {}).get("allow") or []
        return any(isinstance(a, dict) and a.get("room_id") == space_id for a in allow)
    return False


async def spaces_of(rooms: Any, room_id: str) -> list[str]:
    """The spaces the bot is in that list ``room_id`` as a child (its m.space.parent events
    first, then any joined space that lists it)."""
    joined = await rooms.joined_rooms()
    found: list[str] = []
    candidates = list(await rooms.state_events(room_id, SPACE_PARENT)) + joined
    for space in dict.fromkeys(candidates):
        if space == room_id or space not in joined:
            continue
        children = await rooms.state_events(space, SPACE_CHILD)
        if room_id in children:
            found.append(space)
    return found


async def space_rooms(rooms: Any, space_id: str, asking_room: str) -> SpaceRooms:
    joined = set(await rooms.joined_rooms())
    name_state = await rooms.state_event(space_id, "m.room.name") or {}
    name = name_state.get("name")
    name = name if isinstance(name, str) else ""
    included: list[str] = []
    left_out = 0
    for child in sorted(await rooms.state_events(space_id, SPACE_CHILD)):
        if child not in joined or child == space_id:
            continue
        create = await rooms.state_event(child, "m.room.create") or {}
        if create.get("type") == "m.space":
            continue  # a sub-space has no timeline of its own
        rules = await rooms.state_event(child, "m.room.join_rules")
        if child == asking_room or readable_in_space(rules, space_id):
            included.append(child)
        else:
            left_out += 1
    return SpaceRooms(space_id, name, included, left_out)
