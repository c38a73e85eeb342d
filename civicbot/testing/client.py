"""A raw-HTTP Matrix client that plays a resident in tests and in the demo.

It deliberately avoids matrix-nio: tests must send exactly the event shapes a
real client such as Element sends (unstable poll events, thread relations,
reactions), and read back exactly what the server stored.

    alice = await Resident.login(hs.url, "@alice:localhost", "pw")
    room = await alice.create_room(name="Street", invite=[bot_id])
    alice.mark()
    await alice.send_text(room, "!poll Bins on Monday? | yes | no")
    reply = await alice.wait_for(room, lambda e: e["sender"] == bot_id)
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from civicbot.testing.matrix_user import MAX_POLL_S, MatrixUser, _q
from civicbot.testing.synapse import MatrixHTTPError

__all__ = ["MatrixHTTPError", "Resident"]

Event = dict[str, Any]

# A big timeline limit so an incremental sync never comes back `limited`
# (with a gap) and wait_for sees every event. Presence is off on our server.
_SYNC_FILTER = json.dumps(
    {
        "room": {"timeline": {"limit": 1000}},
        "presence": {"types": []},
    }
)
_MAX_POLL_S = MAX_POLL_S


def _now_ms() -> int:
    return int(time.time() * 1000)


class Resident(MatrixUser):
    """One Matrix user speaking raw client-server HTTP.

    Keeps one aiohttp session and its own incremental /sync position. Every
    timeline event it has synced is kept per room, so wait_for() finds events
    that arrived during an earlier wait.
    """

    def __init__(self, homeserver: str, user_id: str, access_token: str) -> None:
        super().__init__(homeserver, user_id, access_token)
        self._since: str | None = None
        self._sync_lock = asyncio.Lock()
        self._timeline: dict[str, list[Event]] = defaultdict(list)
        self._invites: dict[str, dict[str, Any]] = {}  # room id -> invite_state
        self._mark_ms = 0
        self._mark_index: dict[str, int] = {}
        self.mark()

    # ------------------------------------------------------------------- rooms

    async def create_room(
        self,
        name: str | None = None,
        invite: Iterable[str] = (),
        room_version: str | None = None,
        power_level_content_override: dict[str, Any] | None = None,
        is_direct: bool = False,
        preset: str = "private_chat",
    ) -> str:
        """Create a room and return its id."""
        body: dict[str, Any] = {
            "preset": preset,
            "invite": list(invite),
            "is_direct": is_direct,
        }
        if name is not None:
            body["name"] = name
        if room_version is not None:
            body["room_version"] = room_version
        if power_level_content_override is not None:
            body["power_level_content_override"] = power_level_content_override
        resp = await self._request("POST", "/_matrix/client/v3/createRoom", body)
        return str(resp["room_id"])

    async def invite(self, room_id: str, user_id: str) -> None:
        """Invite user_id to the room."""
        await self._request(
            "POST", f"/_matrix/client/v3/rooms/{_q(room_id)}/invite", {"user_id": user_id}
        )

    async def join(self, room_id: str) -> None:
        """Join a room (accepting an invite if there is one)."""
        await self._request("POST", f"/_matrix/client/v3/join/{_q(room_id)}", {})
        # Sync may not have caught up yet; don't offer this invite again.
        self._invites.pop(room_id, None)

    async def leave(self, room_id: str) -> None:
        """Leave a room, or reject a pending invite."""
        await self._request("POST", f"/_matrix/client/v3/rooms/{_q(room_id)}/leave", {})
        self._invites.pop(room_id, None)

    async def ban(self, room_id: str, user_id: str, reason: str = "") -> None:
        """Ban someone from a room (as a moderator does in Element)."""
        body = {"user_id": user_id, **({"reason": reason} if reason else {})}
        await self._request("POST", f"/_matrix/client/v3/rooms/{_q(room_id)}/ban", body)

    async def joined_members(self, room_id: str) -> list[str]:
        """User ids currently joined to the room."""
        resp = await self._request("GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/joined_members")
        return sorted(resp.get("joined", {}))

    async def members_present(self, room_id: str) -> list[str]:
        """User ids joined to or invited into the room (who can read what is said there)."""
        resp = await self._request(
            "GET",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/members",
            params={"not_membership": "leave"},
        )
        return sorted(
            e["state_key"]
            for e in resp.get("chunk", [])
            if (e.get("content") or {}).get("membership") in ("join", "invite")
        )

    async def room_state(self, room_id: str) -> list[Event]:
        """Every current state event of the room."""
        # /state answers with a bare list; room initialSync wraps the same events in an object.
        resp = await self._request("GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/initialSync")
        return list(resp.get("state", []))

    # ------------------------------------------------------------------ events

    async def send_text(
        self,
        room_id: str,
        body: str,
        *,
        msgtype: str = "m.text",
        thread_root: str | None = None,
        reply_to: str | None = None,
        mentions: Iterable[str] = (),
    ) -> str:
        """Send a plain message shaped like Element's; return its event id.

        thread_root puts it in that thread (with Element's fallback reply to the
        root unless reply_to is given); reply_to alone makes a rich reply.
        `m.mentions` is always present, as modern clients send it.
        """
        content: dict[str, Any] = {
            "msgtype": msgtype,
            "body": body,
            "m.mentions": {"user_ids": list(mentions)} if mentions else {},
        }
        if thread_root is not None:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread_root,
                # Clients without thread support show a reply instead.
                "is_falling_back": reply_to is None,
                "m.in_reply_to": {"event_id": reply_to or thread_root},
            }
        elif reply_to is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return await self.send_event(room_id, "m.room.message", content)

    async def send_event(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        txn_id: str | None = None,
    ) -> str:
        """Send any message event as given (e.g. a poll response); return its id.

        Pass the same txn_id twice to test idempotent retries.
        """
        txn = txn_id or uuid.uuid4().hex
        resp = await self._request(
            "PUT",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/send/{_q(event_type)}/{_q(txn)}",
            content,
        )
        return str(resp["event_id"])

    async def send_state(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> str:
        """Set a piece of room state; return the state event's id."""
        resp = await self._request(
            "PUT",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}",
            content,
        )
        return str(resp["event_id"])

    async def get_state(self, room_id: str, event_type: str, state_key: str = "") -> dict[str, Any]:
        """The content of one current state event (MatrixHTTPError 404 if unset)."""
        return await self._request(
            "GET",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}",
        )

    async def set_power_level(self, room_id: str, user_id: str, level: int) -> None:
        """Give user_id the power level `level` (read-modify-write of m.room.power_levels)."""
        levels = await self.get_state(room_id, "m.room.power_levels")
        levels.setdefault("users", {})[user_id] = level
        await self.send_state(room_id, "m.room.power_levels", levels)

    async def redact(self, room_id: str, event_id: str, reason: str | None = None) -> str:
        """Redact an event; return the redaction's event id."""
        body = {"reason": reason} if reason is not None else {}
        resp = await self._request(
            "PUT",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/redact/{_q(event_id)}/{uuid.uuid4().hex}",
            body,
        )
        return str(resp["event_id"])

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        """React to an event with `key` (an emoji, say); return the reaction's id."""
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self.send_event(room_id, "m.reaction", content)

    async def messages(self, room_id: str, limit: int = 50) -> list[Event]:
        """The latest `limit` timeline events of the room, newest first."""
        resp = await self._request(
            "GET",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/messages",
            params={"dir": "b", "limit": str(limit)},
        )
        return list(resp.get("chunk", []))

    async def relations(
        self, room_id: str, event_id: str, rel_type: str | None = None
    ) -> list[Event]:
        """Every event relating to event_id (optionally of one rel_type), all pages."""
        path = f"/_matrix/client/v1/rooms/{_q(room_id)}/relations/{_q(event_id)}"
        if rel_type is not None:
            path += f"/{_q(rel_type)}"
        events: list[Event] = []
        params = {"limit": "100"}
        while True:
            resp = await self._request("GET", path, params=params)
            events.extend(resp.get("chunk", []))
            next_batch = resp.get("next_batch")
            if not next_batch:
                return events
            params = {"limit": "100", "from": next_batch}

    # -------------------------------------------------------------------- sync

    def mark(self) -> None:
        """Start a new waiting window: wait_for() then ignores earlier events.

        "Earlier" means already synced, or stamped (origin_server_ts) before
        this call. The timestamp matters because an event the server stored
        just before mark() may not have reached us through /sync yet. Server
        and tests share one clock on loopback, so the comparison is sound.
        """
        self._mark_ms = _now_ms()
        self._mark_index = {room: len(events) for room, events in self._timeline.items()}

    async def wait_for(
        self,
        room_id: str,
        predicate: Callable[[Event], bool],
        timeout: float = 20,  # noqa: ASYNC109 - a per-call deadline reads best in tests
    ) -> Event:
        """Return the first timeline event after the mark for which predicate is true.

        Events are raw /sync dicts with "room_id" added. Raises TimeoutError,
        listing what did arrive, if none matches within timeout seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            for event in self._since_mark(room_id):
                if predicate(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.user_id}: no matching event in {room_id} within {timeout}s; "
                    f"seen since mark: {self._describe(self._since_mark(room_id))}"
                )
            await self._sync(min(remaining, _MAX_POLL_S))

    async def wait_for_invite(self, timeout: float = 20) -> str:  # noqa: ASYNC109
        """Return the id of a room this user is invited to but has not joined or left."""
        deadline = time.monotonic() + timeout
        while not self._invites:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.user_id}: no invite within {timeout}s")
            await self._sync(min(remaining, _MAX_POLL_S))
        return next(iter(self._invites))

    async def wait_for_invite_from(
        self,
        inviter: str,
        exclude: Iterable[str] = (),
        timeout: float = 20,  # noqa: ASYNC109
    ) -> str:
        """The id of a pending invite sent by ``inviter`` (not one of ``exclude``)."""
        skip = set(exclude)
        deadline = time.monotonic() + timeout
        while True:
            for room_id, state in self._invites.items():
                if room_id in skip:
                    continue
                for event in state.get("events", []) if isinstance(state, dict) else []:
                    if (
                        event.get("type") == "m.room.member"
                        and event.get("state_key") == self.user_id
                        and event.get("sender") == inviter
                    ):
                        return room_id
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.user_id}: no invite from {inviter} within {timeout}s")
            await self._sync(min(remaining, _MAX_POLL_S))

    def _since_mark(self, room_id: str) -> list[Event]:
        events = self._timeline.get(room_id, [])
        start = self._mark_index.get(room_id, 0)
        return [e for e in events[start:] if e.get("origin_server_ts", 0) >= self._mark_ms]

    @staticmethod
    def _describe(events: list[Event], last: int = 8) -> str:
        if not events:
            return "nothing"
        shown = []
        for e in events[-last:]:
            body = str(e.get("content", {}).get("body", ""))[:60]
            shown.append(f"{e.get('type')} from {e.get('sender')}: {body!r}")
        return f"{len(events)} events, last {len(shown)}: " + "; ".join(shown)

    async def _sync(self, timeout_s: float) -> None:
        """One /sync round: append new timeline events, track invites."""
        async with self._sync_lock:
            params = {"filter": _SYNC_FILTER, "timeout": str(int(timeout_s * 1000))}
            if self._since is not None:
                params["since"] = self._since
            resp = await self._request("GET", "/_matrix/client/v3/sync", params=params)
            self._since = resp["next_batch"]
            rooms = resp.get("rooms", {})
            for room_id, invite in rooms.get("invite", {}).items():
                self._invites[room_id] = invite.get("invite_state", {})
            for section in ("join", "leave"):
                for room_id, room in rooms.get(section, {}).items():
                    self._invites.pop(room_id, None)
                    for event in room.get("timeline", {}).get("events", []):
                        # /sync omits room_id; /messages has it. Make them alike.
                        event.setdefault("room_id", room_id)
                        self._timeline[room_id].append(event)
