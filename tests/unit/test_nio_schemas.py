"""nio checks events with our compiled validators (civicbot.transport.schemas), and decides
exactly as its own validator does: the same events accepted, the same rejected, the same
defaults filled in — on real syncs from Synapse and on thousands of broken events made from
them."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nio.events.misc
import nio.responses
import nio.schemas
import pytest
from nio import BadEvent, RoomMessageText, SyncResponse
from nio.events.room_events import Event as NioEvent

import civicbot.transport.matrix  # noqa: F401 (installs the compiled validators)
from civicbot.transport import schemas

# Real /sync answers, as Synapse sent them (made by tests/unit/captured/capture_syncs.py).
SYNCS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "captured" / "syncs.json").read_text()
)
BROKEN_VALUES: tuple[Any, ...] = (None, 7, "x", [], {})
# A to-device message as another device sends it (the reader of the captured syncs had no
# device keys, so none came): an Olm-encrypted message and a key request, shaped as in the
# client-server spec.
TO_DEVICE: tuple[dict[str, Any], ...] = (
    {
        "type": "m.room.encrypted",
        "sender": "@eve:localhost",
        "content": {
            "algorithm": "m.olm.v1.curve25519-aes-sha2",
            "sender_key": "Szl29ksW/L8yZGWAX+8dY1XyFi+i5wm+DRhTGkbMiwU",
            "ciphertext": {
                "7qZcfnBmbEGzxxaWfBjElJuvn7BZx+hTs/kfmL8r8jE": {"type": 0, "body": "AwogN"}
            },
        },
    },
    {
        "type": "m.room_key_request",
        "sender": "@eve:localhost",
        "content": {
            "action": "request",
            "requesting_device_id": "EVEDEVICE",
            "request_id": "1495474790150.19",
            "body": {
                "algorithm": "m.megolm.v1.aes-sha2",
                "room_id": "!r:localhost",
                "sender_key": "RF3s+E7RkTQTGF2d8Deol0FkQvgII2aJDf3/Jp5mxVU",
                "session_id": "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ",
            },
        },
    },
)


def raw(**content: Any) -> dict[str, Any]:
    return {
        "event_id": "$e:hs",
        "sender": "@ann:hs",
        "type": "m.room.message",
        "origin_server_ts": 1,
        "content": content,
    }


def test_nio_uses_one_compiled_check_per_schema_and_still_rejects_bad_events(monkeypatch):
    assert nio.events.misc.validate_json is schemas.validate_json
    assert nio.responses.validate_json is schemas.validate_json
    compiled = []
    real = schemas.compile_check
    monkeypatch.setattr(schemas, "_checks", {})
    monkeypatch.setattr(schemas, "compile_check", lambda s: compiled.append(1) or real(s))
    for n in range(5):
        assert isinstance(
            NioEvent.parse_event(raw(msgtype="m.text", body=f"hi {n}")), RoomMessageText
        )
    assert isinstance(NioEvent.parse_event(raw(body="no msgtype")), BadEvent)
    assert len(compiled) <= 3  # one per schema used, not one per event


def _with(validate: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in schemas._USERS:
        module = __import__(name, fromlist=["validate_json"])
        monkeypatch.setattr(module, "validate_json", validate)


def _outcome(parse: Any, instance: Any) -> tuple[str, str, str]:
    """What parsing ``instance`` gave: the result's class and fields (a rejected event's
    source too: it reaches the core), and the instance after (a validator fills defaults
    into it)."""
    try:
        result = parse(instance)
    except Exception as exc:  # compared too: both must fail the same way
        return ("raised", type(exc).__name__, json.dumps(instance, sort_keys=True, default=str))
    after = json.dumps(instance, sort_keys=True, default=str)
    return (type(result).__name__, repr(_fields(result)), after)


def _fields(result: Any) -> Any:
    """A parse result without what differs between two parses of the same input (the
    timestamps nio stamps on a response)."""
    if isinstance(result, SyncResponse):
        return {
            "join": {
                room: (info.state, info.timeline.events, info.timeline.limited)
                for room, info in result.rooms.join.items()
            },
            "invite": {room: info.invite_state for room, info in result.rooms.invite.items()},
            "leave": {room: info.timeline.events for room, info in result.rooms.leave.items()},
            "to_device": result.to_device_events,
            "next_batch": result.next_batch,
        }
    return result


def _both(parse: Any, instance: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    _with(schemas._nio_validate, monkeypatch)
    theirs = _outcome(parse, copy.deepcopy(instance))
    _with(schemas.validate_json, monkeypatch)
    ours = _outcome(parse, copy.deepcopy(instance))
    return theirs, ours


def test_real_syncs_parse_exactly_as_with_nios_own_validator(monkeypatch):
    assert len(SYNCS) >= 5
    for answer in SYNCS:
        theirs, ours = _both(SyncResponse.from_dict, answer, monkeypatch)
        assert theirs[0] == "SyncResponse"
        assert ours == theirs


def _events() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every distinct event of the captured syncs, with the section it came in."""
    seen: set[str] = set()
    for answer in SYNCS:
        for kind, rooms in answer.get("rooms", {}).items():
            for room in rooms.values():
                for section in ("state", "timeline", "invite_state"):
                    for event in (room.get(section) or {}).get("events", []):
                        key = json.dumps(event, sort_keys=True)
                        if key not in seen:
                            seen.add(key)
                            yield ("invite" if section == "invite_state" else kind), event
    for message in TO_DEVICE:
        yield "to_device", message


def _broken(value: Any, depth: int = 3) -> Iterator[Any]:
    """``value`` with one thing wrong: each key dropped, or each value made another type."""
    if depth == 0:
        return
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, inner in list(items):
        if isinstance(value, dict):
            dropped = dict(value)
            del dropped[key]
            yield dropped
        for other in BROKEN_VALUES:
            if type(other) is not type(inner):
                changed = copy.copy(value)
                changed[key] = other
                yield changed
        if isinstance(inner, dict | list) and inner:
            for wrong in _broken(inner, depth - 1):
                changed = copy.copy(value)
                changed[key] = wrong
                yield changed


def _in_a_sync(kind: str, event: dict[str, Any]) -> dict[str, Any]:
    if kind == "to_device":
        return {"next_batch": "s1", "rooms": {}, "to_device": {"events": [event]}}
    room: dict[str, Any]
    if kind == "invite":
        room = {"invite_state": {"events": [event]}}
    else:
        room = {"timeline": {"events": [event], "limited": False}, "state": {"events": []}}
    return {"next_batch": "s1", "rooms": {kind: {"!r:hs": room}}}


def test_broken_events_are_judged_exactly_as_nios_own_validator_judges_them(monkeypatch):
    compared = 0
    for kind, event in _events():
        for wrong in _broken(event):
            theirs, ours = _both(SyncResponse.from_dict, _in_a_sync(kind, wrong), monkeypatch)
            assert ours == theirs, json.dumps(wrong)
            compared += 1
    assert compared > 3_000, compared
