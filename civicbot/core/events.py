"""Normalised events in, messages out: the only shapes plugins see of Matrix."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any
from urllib.parse import quote

POLL_START_TYPES = ("org.matrix.msc3381.poll.start", "m.poll.start")
POLL_RESPONSE_TYPES = ("org.matrix.msc3381.poll.response", "m.poll.response")
POLL_END_TYPES = ("org.matrix.msc3381.poll.end", "m.poll.end")
# What the bot sends (DESIGN.md §4): the unstable MSC3381 names are the ones clients render.
POLL_START_TYPE = POLL_START_TYPES[0]
POLL_END_TYPE = POLL_END_TYPES[0]
POLL_TEXT_KEY = "org.matrix.msc1767.text"
POLL_DISCLOSED = "org.matrix.msc3381.poll.disclosed"
POLL_UNDISCLOSED = "org.matrix.msc3381.poll.undisclosed"
# A response's answers: the stable key first, as matrix-events-sdk reads them.
_RESPONSE_KEYS = ("m.poll.response", "org.matrix.msc3381.poll.response")


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
        # The hot path of every sync (issue 23 §2): type checks are inline, not calls of _text.
        content = raw.get("content") or {}
        if type(content) is not dict:
            content = {}
        event_type = raw.get("type")
        if type(event_type) is not str:
            event_type = ""
        kind = _KIND_BY_TYPE.get(event_type, EventKind.OTHER)
        body = ""
        relation = content.get("m.relates_to")
        relates_to = None if relation is None else _relation(relation)
        if event_type == "m.room.message":
            kind = EventKind.NOTICE if content.get("msgtype") == "m.notice" else EventKind.MESSAGE
            text = content.get("body")
            if type(text) is str:
                body = _strip_reply_fallback(text) if text.startswith("> ") else text
            if relates_to and relates_to.get("rel_type") == "m.replace":
                kind = EventKind.EDIT  # an edit changes an old message; it asks nothing new
        if kind in _NEEDS_RELATION and not (relates_to and relates_to.get("event_id")):
            kind = EventKind.OTHER
        thread_root = None
        if relates_to and relates_to.get("rel_type") == "m.thread":
            thread_root = relates_to.get("event_id")
        redacts = None
        if "redacts" in raw or "redacts" in content:
            redacts = _text(raw.get("redacts")) or _text(content.get("redacts")) or None
        state_key = raw.get("state_key")
        ts = raw.get("origin_server_ts")
        event_id = raw.get("event_id")
        sender = raw.get("sender")
        return _build(
            event_id if type(event_id) is str else "",
            room_id,
            sender if type(sender) is str else "",
            kind,
            event_type,
            ts if type(ts) is int and ts >= 0 else 0,
            content,
            body,
            state_key if type(state_key) is str else None,
            relates_to,
            thread_root,
            redacts,
        )


def _builder() -> Callable[..., Event]:
    """Every event of every sync is built here (issue 23 §2: a plain message's whole cost is
    a few µs). A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``,
    1.2 µs an event; the slots' own descriptors set the same fields in half that, and the event
    stays frozen to everyone after."""
    s = [Event.__dict__[f.name].__set__ for f in fields(Event)]
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11 = s
    new = object.__new__

    def build(
        event_id: str,
        room_id: str,
        sender: str,
        kind: EventKind,
        event_type: str,
        ts: int,
        content: dict[str, Any],
        body: str,
        state_key: str | None,
        relates_to: dict[str, Any] | None,
        thread_root: str | None,
        redacts: str | None,
    ) -> Event:
        e = new(Event)
        s0(e, event_id)
        s1(e, room_id)
        s2(e, sender)
        s3(e, kind)
        s4(e, event_type)
        s5(e, ts)
        s6(e, content)
        s7(e, body)
        s8(e, state_key)
        s9(e, relates_to)
        s10(e, thread_root)
        s11(e, redacts)
        return e

    return build


_build = _builder()


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
    """Something the bot says. Notices by default: bots must not trigger other bots, and a
    notice notifies nobody (Matrix's ``.m.rule.suppress_notices``).

    ``notify`` names the people the message is *for*, who must hear about it (an offer of help
    to the person who asked, an introduction, a reminder they asked for). Where they are the
    only people in the room besides the bot (a direct chat, an introduction room) it is sent
    as ``m.text`` mentioning exactly them, so their client notifies them and nobody else; in a
    room with anyone else it stays a silent notice there and each of them gets a direct message
    with its text and a link (see :meth:`civicbot.core.outgoing.Outgoing.message`)."""

    text: str
    html: str | None = None
    mentions: tuple[str, ...] = ()
    mention_room: bool = False
    notice: bool = True
    notify: tuple[str, ...] = ()
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


MAX_VIA = 3
_MAX_ROUTES = 10_000
# room id -> the servers links to it go through, kept up to date by the core from the room
# state it reads (civicbot.core.routing), so every matrix_to in every plugin gets them.
_ROUTES: dict[str, tuple[str, ...]] = {}
_FORGOTTEN: dict[str, int] = {}  # room id -> how many times its servers were forgotten


def via_generation(room_id: str) -> int:
    """Read before working a room's servers out and given to :func:`remember_via`: if the room
    changed meanwhile (its servers were forgotten), what was read is not remembered."""
    return _FORGOTTEN.get(room_id, 0)


def remember_via(room_id: str, servers: Sequence[str], generation: int | None = None) -> None:
    """Record the ``via`` servers of ``room_id`` for :func:`matrix_to` (the core does this);
    not if they were forgotten since ``generation`` (a change came while they were read)."""
    if generation is not None and generation != _FORGOTTEN.get(room_id, 0):
        return
    _ROUTES.pop(room_id, None)
    _ROUTES[room_id] = tuple(servers[:MAX_VIA])
    while len(_ROUTES) > _MAX_ROUTES:
        del _ROUTES[next(iter(_ROUTES))]


def forget_via(room_id: str) -> None:
    """The room's members, power levels or server ACL changed: work its servers out again."""
    _FORGOTTEN[room_id] = _FORGOTTEN.get(room_id, 0) + 1
    while len(_FORGOTTEN) > _MAX_ROUTES:
        del _FORGOTTEN[next(iter(_FORGOTTEN))]
    _ROUTES.pop(room_id, None)


def forget_all_via() -> None:
    """A bot starting: what another bot in this process learnt is not its to trust."""
    _ROUTES.clear()


def known_via(room_id: str) -> tuple[str, ...] | None:
    return _ROUTES.get(room_id)


def matrix_to(room_id: str, event_id: str | None = None, via: Sequence[str] | None = None) -> str:
    """A matrix.to link to a room or one of its events (every client opens these).

    It names up to three servers that are in the room (``via``, by default those the core
    worked out from the room's state, see :func:`via_servers`): room version 12 room ids carry
    no server name, so a client on another homeserver can only reach the room through a server
    it is told about."""
    link = "https://matrix.to/#/" + quote(room_id, safe="!:@#")
    link += "/" + quote(event_id, safe="$:") if event_id else ""
    if via is None:
        via = _ROUTES.get(room_id, ())
    servers = [s for s in dict.fromkeys(via) if s][:MAX_VIA]
    if servers:
        link += "?" + "&".join("via=" + quote(s, safe=":[]") for s in servers)
    return link


def via_servers(
    members: Sequence[str],
    power: Mapping[str, float] | None = None,
    server_acl: Mapping[str, Any] | None = None,
) -> list[str]:
    """Up to three servers to route a link through, as the spec's "Routing" section for
    matrix.to links recommends: the server of the highest-power member (if they have power
    level 50 or more), then the servers with the most joined members; never an IP literal or a
    server the room's ``m.room.server_acl`` denies."""
    counts: dict[str, int] = {}
    for member in members:
        server = _server_of(member)
        if server and not _is_ip_literal(server) and _acl_allows(server_acl, server):
            counts[server] = counts.get(server, 0) + 1
    chosen: list[str] = []
    joined = set(members)
    ranked = sorted(
        ((level, user) for user, level in (power or {}).items() if user in joined),
        key=lambda item: (-item[0], item[1]),
    )
    if ranked and ranked[0][0] >= 50 and _server_of(ranked[0][1]) in counts:
        chosen.append(_server_of(ranked[0][1]))
    for server, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if server not in chosen:
            chosen.append(server)
    return chosen[:MAX_VIA]


def _acl_allows(acl: Mapping[str, Any] | None, server: str) -> bool:
    if not acl:
        return True
    host = server.rsplit(":", 1)[0] if not server.startswith("[") else server
    deny = [p for p in acl.get("deny") or [] if isinstance(p, str)]
    allow = [p for p in acl.get("allow") or [] if isinstance(p, str)]
    if any(fnmatch.fnmatchcase(host, p) for p in deny):
        return False
    return any(fnmatch.fnmatchcase(host, p) for p in allow)


def _server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def _is_ip_literal(server: str) -> bool:
    host = server
    if host.startswith("["):
        return True  # an IPv6 literal
    host = host.rsplit(":", 1)[0] if ":" in host else host
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def poll_response_answers(content: dict[str, Any]) -> object:
    """The answers of an MSC3381 poll response as sent (not yet checked: a client may send
    anything), the stable key first, as matrix-events-sdk reads them."""
    for key in _RESPONSE_KEYS:
        block = content.get(key)
        if block is not None:
            return block.get("answers") if isinstance(block, dict) else None
    return None


def poll_end_content(start_event_id: str, text: str) -> dict[str, Any]:
    """An MSC3381 poll end for the poll ``start_event_id``, with ``text`` for clients that show
    the end as a message."""
    return {
        "m.relates_to": {"rel_type": "m.reference", "event_id": start_event_id},
        POLL_END_TYPE: {},
        POLL_TEXT_KEY: text,
        "body": text,
    }


def notice_replacement(event_id: str, text: str, html: str | None = None) -> dict[str, Any]:
    """An ``m.replace`` of one of the bot's notices: the whole new message in ``m.new_content``
    (clients that apply edits show it). Send it as the ``extra`` of a message whose body is the
    fallback for clients that do not."""
    new_content: dict[str, Any] = {"msgtype": "m.notice", "body": text, "m.mentions": {}}
    if html is not None:
        new_content.update(format="org.matrix.custom.html", formatted_body=html)
    return {
        "m.new_content": new_content,
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
    }


def notice_edit(event_id: str, text: str, html: str | None = None) -> Message:
    """The edit of one of the bot's notices to ``text`` (and ``html``): the ``m.replace``
    content, and "* …" as the fallback body for clients that do not apply edits."""
    return Message(
        f"* {text}",
        f"* {html}" if html is not None else None,
        extra=notice_replacement(event_id, text, html),
    )
