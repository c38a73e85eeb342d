"""nio validates with one cached validator per schema, and still rejects what it rejected."""

from __future__ import annotations

import nio.events.misc
import nio.responses
import nio.schemas
from nio import BadEvent, RoomMessageText
from nio.events.room_events import Event as NioEvent

import civicbot.transport.matrix  # noqa: F401 (installs the cache)
from civicbot.transport import schemas


def raw(**content):
    return {
        "event_id": "$e:hs",
        "sender": "@ann:hs",
        "type": "m.room.message",
        "origin_server_ts": 1,
        "content": content,
    }


def test_nio_builds_one_validator_per_schema_and_still_rejects_bad_events(monkeypatch):
    assert nio.events.misc.validate_json is schemas.validate_json
    assert nio.responses.validate_json is schemas.validate_json
    built = []
    real = nio.schemas.Validator
    monkeypatch.setattr(schemas, "_validators", {})
    monkeypatch.setattr(nio.schemas, "Validator", lambda *a, **k: built.append(1) or real(*a, **k))
    for n in range(5):
        assert isinstance(
            NioEvent.parse_event(raw(msgtype="m.text", body=f"hi {n}")), RoomMessageText
        )
    assert isinstance(NioEvent.parse_event(raw(body="no msgtype")), BadEvent)
    assert len(built) <= 3  # one per schema used, not one per event
