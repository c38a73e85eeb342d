"""Normalised events in, messages out: the only shapes plugins see of Matrix."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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
        """Build an event from the JSON a homeserver sends (client-server API format)."""
        content = raw.get("content") or {}
        if not isinstance(content, dict):
            content = {}
        event_type = str(raw.get("type", ""))
        kind = _KIND_BY_TYPE.get(event_type, EventKind.OTHER)
        body = ""
        if event_type == "m.room.message":
            kind = EventKind.NOTICE if content.get("msgtype") == "m.notice" else EventKind.MESSAGE
            body = _strip_reply_fallback(str(content.get("body", "")))
        relates_to = content.get("m.relates_to")
        if not isinstance(relates_to, dict):
            relates_to = None
        thread_root = None
        if relates_to and relates_to.get("rel_type") == "m.thread":
            thread_root = relates_to.get("event_id")
        redacts = raw.get("redacts") or content.get("redacts")
        return cls(
            event_id=str(raw.get("event_id", "")),
            room_id=room_id,
            sender=str(raw.get("sender", "")),
            kind=kind,
            type=event_type,
            ts=int(raw.get("origin_server_ts") or 0),
            content=content,
            body=body,
            state_key=raw.get("state_key"),
            relates_to=relates_to,
            thread_root=thread_root,
            redacts=redacts,
        )


def _strip_reply_fallback(body: str) -> str:
    """Drop the '> <@user> quoted text' lines older clients prepend to replies."""
    if not body.startswith("> "):
        return body
    lines = body.splitlines()
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
