"""Event normalisation: what plugins may rely on, whatever JSON a room member sends."""

from __future__ import annotations

import pytest

from civicbot.core.events import Event, EventKind

SEPARATORS = ("\r", "\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e")


def message(body, relates_to=None, **extra):
    content = {"msgtype": "m.text", "body": body, **extra}
    if relates_to is not None:
        content["m.relates_to"] = relates_to
    raw = {"event_id": "$e", "sender": "@mod:hs", "type": "m.room.message", "content": content}
    return Event.from_raw(raw, "!r:hs")


@pytest.mark.parametrize("separator", SEPARATORS)
def test_a_quoted_command_behind_any_separator_stays_quoted(separator):
    quoted = f"Sounds good{separator}!outcome P-5 Council approved"
    body = f"> <@eve:hs> {quoted}\n\nAgreed"
    assert message(body, {"m.in_reply_to": {"event_id": "$q"}}).body == "Agreed"


def test_the_reply_itself_is_kept_line_by_line_on_new_lines_only():
    body = "> <@eve:hs> first\n> second\n\n!vote P-1 2\nand\u2028more"
    assert message(body).body == "!vote P-1 2\nand\u2028more"


def test_an_edit_is_never_a_message_to_act_on():
    edit = message(
        "!poll Sneaky? | a | b",
        {"rel_type": "m.replace", "event_id": "$orig"},
        **{"m.new_content": {"msgtype": "m.text", "body": "!poll Sneaky? | a | b"}},
    )
    assert edit.kind is EventKind.EDIT


@pytest.mark.parametrize("bad", [["$x"], {"$x": 1}, 7, None, True])
@pytest.mark.parametrize(
    "event_type", ["org.matrix.msc3381.poll.response", "org.matrix.msc3381.poll.end", "m.reaction"]
)
def test_relations_with_wrongly_typed_fields_are_dropped(bad, event_type):
    raw = {
        "event_id": "$e",
        "sender": "@eve:hs",
        "type": event_type,
        "content": {"m.relates_to": {"rel_type": "m.reference", "event_id": bad, "key": "x"}},
    }
    event = Event.from_raw(raw, "!r:hs")
    assert event.kind is EventKind.OTHER  # no plugin handles it
    assert event.relates_to is None or isinstance(event.relates_to.get("event_id"), str)


@pytest.mark.parametrize("bad", [["$x"], {"event_id": ["$x"]}, "text"])
def test_a_malformed_reply_relation_is_dropped(bad):
    assert message("hello", {"m.in_reply_to": bad}).relates_to is None


def test_wrongly_typed_top_level_fields_become_empty():
    raw = {
        "event_id": ["$e"],
        "sender": {"@eve:hs": 1},
        "type": "m.room.message",
        "origin_server_ts": "soon",
        "state_key": 5,
        "redacts": ["$x"],
        "content": {"msgtype": "m.text", "body": ["!ping"]},
    }
    event = Event.from_raw(raw, "!r:hs")
    assert (event.event_id, event.sender, event.ts, event.state_key, event.redacts) == (
        "",
        "",
        0,
        None,
        None,
    )
    assert event.body == ""


def test_poll_helpers_read_and_write_msc3381_as_clients_do():
    from civicbot.core.events import (
        POLL_END_TYPE,
        notice_replacement,
        poll_end_content,
        poll_response_answers,
    )

    stable = {"m.poll.response": {"answers": ["a"]}}
    unstable = {"org.matrix.msc3381.poll.response": {"answers": ["b"]}}
    both = {**unstable, **stable}
    assert poll_response_answers(stable) == ["a"]
    assert poll_response_answers(unstable) == ["b"]
    assert poll_response_answers(both) == ["a"]  # the stable key first, as matrix-events-sdk
    assert poll_response_answers({"m.poll.response": "junk"}) is None
    assert poll_response_answers({}) is None

    end = poll_end_content("$start", "Closed.")
    assert end["m.relates_to"] == {"rel_type": "m.reference", "event_id": "$start"}
    assert end[POLL_END_TYPE] == {} and end["body"] == "Closed."

    edit = notice_replacement("$table", "new text", "<b>new</b>")
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$table"}
    assert edit["m.new_content"]["msgtype"] == "m.notice"
    assert edit["m.new_content"]["m.mentions"] == {}  # an edit pings nobody
    assert edit["m.new_content"]["formatted_body"] == "<b>new</b>"


def test_servers_read_while_the_room_changed_are_not_remembered():
    """The servers of a room are worked out in the background after a start; a membership
    change that comes while they are read must not be overwritten by what was read before."""
    from civicbot.core.events import forget_via, known_via, remember_via, via_generation

    room = "!changing:hs"
    before = via_generation(room)
    forget_via(room)  # someone joined while the old members were being read
    remember_via(room, ["old.example"], before)
    assert known_via(room) is None  # worked out again at its next event
    now = via_generation(room)
    remember_via(room, ["hs"], now)
    assert known_via(room) == ("hs",)
