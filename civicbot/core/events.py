"""Normalised events in, messages out: the only shapes plugins see of Matrix."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote

POLL_START_TYPES = ("org.matrix.msc3381.poll.start", "m.poll.start")
POLL_RESPONSE_TYPES = ("org.matrix.msc3381.poll.response", "m.poll.response")
POLL_END_TYPES = ("org.matrix.msc3381.poll.end", "m.poll.end")


class EventKind(StrEnum):
    MESSAGE = "message"
    NOTICE = "notice"
    REACTION = "reaction"
    REDACTION = "redaction"
    POLL_START = "poll_start"
    POLL_RESPONSE = "poll_response"
    POLL_END = "poll_end"
    MEMBERSHIP = "membership"
    POWER_LEVELS = "power_levels"
    INVITE = "invite"
    EDIT = "edit"  # an m.replace edit of a message: never read as a new command
    OTHER = "other"


_KIND_BY_TYPE: dict[str, EventKind] = {
    "m.reaction": EventKind.REACTION,
    "m.room.redaction": EventKind.REDACTION,
    "m.room.member": EventKind.MEMBERSHIP,
    "m.room.power_levels": EventKind.POWER_LEVELS,
    **{t: EventKind.POLL_START for t in POLL_START_TYPES},
    **{t: EventKind.POLL_RESPONSE for t in POLL_RESPONSE_TYPES},
    **{t: EventKind.POLL_END for t in POLL_END_TYPES},
}


@dataclass(frozen=True, slots=True)
class Event:
    """One room event as the core and plugins see it."""

    event_id: str
    room_id: str
    sender: str
    kind: EventKind
    type: str
    ts: int  # origin_server_ts, milliseconds since the epoch
    content: dict[str, Any] = field(default_factory=dict)
    body: str = ""
    state_key: str | None = None
    relates_to: dict[str, Any] | None = None
    thread_root: str | None = None
    redacts: str | None = None

    @property
    def membership(self) -> str | None:
        return self.content.get("membership") if self.kind is EventKind.MEMBERSHIP else None

    @property
    def related_event_id(self) -> str | None:
        return self.relates_to.get("event_id") if self.relates_to else None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], room_id: str) -> Event:
        """Build an event from the JSON a homeserver sends (client-server API format).

        Anyone in a room can send any JSON, so every field a plugin reads is checked for its
        type here: a wrongly typed one is dropped (a relation whose ``event_id`` is a list is
        no relation), and an event that means nothing without it (a poll response or end, a
        reaction) becomes ``OTHER``, which no plugin handles."""
        content = raw.get("content") or {}
        if not isinstance(content, dict):
            content = {}
        event_type = _text(raw.get("type"))
        kind = _KIND_BY_TYPE.get(event_type, EventKind.OTHER)
        body = ""
        relates_to = _relation(content.get("m.relates_to"))
        if event_type == "m.room.message":
            msgtype = content.get("msgtype")
            kind = EventKind.NOTICE if msgtype == "m.notice" else EventKind.MESSAGE
            body = _strip_reply_fallback(_text(content.get("body")))
            if relates_to and relates_to.get("rel_type") == "m.replace":
                kind = EventKind.EDIT  # an edit changes an old message; it asks nothing new
        if kind in _NEEDS_RELATION and not (relates_to and relates_to.get("event_id")):
            kind = EventKind.OTHER
        thread_root = None
        if relates_to and relates_to.get("rel_type") == "m.thread":
            thread_root = relates_to.get("event_id")
        redacts = _text(raw.get("redacts")) or _text(content.get("redacts")) or None
        state_key = raw.get("state_key")
        ts = raw.get("origin_server_ts")
        return cls(
            event_id=_text(raw.get("event_id")),
            room_id=room_id,
            sender=_text(raw.get("sender")),
            kind=kind,
            type=event_type,
            ts=ts if isinstance(ts, int) and not isinstance(ts, bool) and ts >= 0 else 0,
            content=content,
            body=body,
            state_key=state_key if isinstance(state_key, str) else None,
            relates_to=relates_to,
            thread_root=thread_root,
            redacts=redacts,
        )


_NEEDS_RELATION = (EventKind.POLL_RESPONSE, EventKind.POLL_END, EventKind.REACTION)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _relation(value: Any) -> dict[str, Any] | None:
    """``m.relates_to`` if every field the core and plugins read has the right type, else
    None. The other keys are kept as sent."""
    if not isinstance(value, dict):
        return None
    for key in ("rel_type", "event_id", "key"):
        if key in value and not isinstance(value[key], str):
            return None
    reply = value.get("m.in_reply_to")
    if reply is not None and not (
        isinstance(reply, dict) and isinstance(reply.get("event_id", ""), str)
    ):
        return None
    if "is_falling_back" in value and not isinstance(value["is_falling_back"], bool):
        return None
    return value


def _strip_reply_fallback(body: str) -> str:
    """Drop the quoted '> <@user> text' lines older clients prepend to replies.

    As the spec describes it: clients put ``> `` before every line of the quoted message, and
    lines end only at ``\n``. ``str.splitlines`` also splits on ``\r``, ``\x0c``, U+0085,
    U+2028 …, so a quoted message hiding a command after one of those would have its command
    surface as if the replier had typed it."""
    if not body.startswith("> "):
        return body
    lines = body.split("\n")
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    if lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)


@dataclass(slots=True)
class Message:
    """Something the bot says. Notices by default: bots must not trigger other bots."""

    text: str
    html: str | None = None
    mentions: tuple[str, ...] = ()
    mention_room: bool = False
    notice: bool = True
    reply_to: str | None = None
    thread_root: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def content(self) -> dict[str, Any]:
        """The ``m.room.message`` content, with ``m.mentions`` always present."""
        content: dict[str, Any] = {
            "msgtype": "m.notice" if self.notice else "m.text",
            "body": self.text,
        }
        if self.html is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = self.html
        mentions: dict[str, Any] = {}
        if self.mentions:
            mentions["user_ids"] = sorted(set(self.mentions))
        if self.mention_room:
            mentions["room"] = True
        content["m.mentions"] = mentions
        relation = thread_relation(self.thread_root, self.reply_to)
        if relation:
            content["m.relates_to"] = relation
        content.update(self.extra)
        return content


def thread_relation(thread_root: str | None, reply_to: str | None) -> dict[str, Any] | None:
    """``m.relates_to`` for a reply, in the thread when there is one."""
    if thread_root:
        relation: dict[str, Any] = {"rel_type": "m.thread", "event_id": thread_root}
        if reply_to and reply_to != thread_root:
            relation["is_falling_back"] = False
            relation["m.in_reply_to"] = {"event_id": reply_to}
        else:
            relation["is_falling_back"] = True
            relation["m.in_reply_to"] = {"event_id": reply_to or thread_root}
        return relation
    if reply_to:
        return {"m.in_reply_to": {"event_id": reply_to}}
    return None


def matrix_to(room_id: str, event_id: str | None = None) -> str:
    """A matrix.to link to a room or one of its events (every client opens these)."""
    link = "https://matrix.to/#/" + quote(room_id, safe="!:@#")
    return link + ("/" + quote(event_id, safe="$:") if event_id else "")
