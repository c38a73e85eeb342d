"""The public site's data: which rooms are published, what their pages hold, whose names show,
and the secret addresses of personal calendar feeds.

Every page is built from what plugins return through the ``public_section`` hook (typed,
already filtered by each plugin); this module adds the guarantees that hold for every plugin:

- only rooms whose moderators set ``web.public true`` exist here, and never a DM: any other
  room is "not found", exactly like a room that does not exist;
- a person is shown by display name only, only while a member of the room, only when the
  room allows names (``web.names``), and never when the "person" is a forgotten person's
  stand-in (anything that is not a Matrix id);
- the room is addressed by a keyed hash of its id, so its address tells nothing about it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from civicbot.core.public import (
    PublicConsultation,
    PublicDecision,
    PublicError,
    PublicMeeting,
    PublicPost,
    PublicSection,
)
from civicbot.policy.plugin_config import WEB, WebConfig
from civicbot.policy.room_settings import RoomSettings
from civicbot.scheduling.clock import Clock
from civicbot.storage.database import Database, Migration
from civicbot.transport import Transport, TransportError

log = logging.getLogger(__name__)

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE web_calendars (
        person TEXT PRIMARY KEY,
        salt TEXT NOT NULL,              -- a new one on !calendar reset
        lookup TEXT NOT NULL UNIQUE,     -- keyed hash of the URL's token: the token is not stored
        created_at INTEGER NOT NULL
    );
    """
]

# Bot.collect_hook: (plugin name, result) of every enabled plugin that returned something.
Collect = Callable[..., Awaitable[list[tuple[str, Any]]]]
SLUG_LENGTH = 20
MAX_TRACKED_ROOMS = 100_000


@dataclass
class RoomView:
    """Everything one room's page shows."""

    room_id: str
    slug: str
    name: str
    topic: str
    join_url: str
    meetings: list[PublicMeeting] = field(default_factory=list)
    decisions: list[PublicDecision] = field(default_factory=list)
    consultations: list[PublicConsultation] = field(default_factory=list)
    offers: list[PublicPost] = field(default_factory=list)
    needs: list[PublicPost] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # Matrix id -> display name
    via: str = ""
    zone: str = "UTC"
    # Pages rendered from this view, by path: kept as long as the view (until the room changes).
    pages: dict[str, str] = field(default_factory=dict)

    def name_of(self, user_id: str | None) -> str:
        """The display name to print, or "" to print none."""
        return self.names.get(user_id or "", "")

    def event_url(self, event_id: str | None) -> str:
        """A matrix.to link to a message in the room (with ``via``: room version 12 ids name no
        server), or "" when the item was never posted."""
        if not event_id:
            return ""
        return matrix_link(self.room_id, self.via, event_id)

    def item(self, label: str) -> Any | None:
        for items in (self.meetings, self.decisions, self.consultations, self.offers, self.needs):
            for found in items:
                if found.label.upper() == label.upper():
                    return found
        return None


def matrix_link(room_id: str, via: str, event_id: str | None = None) -> str:
    link = "https://matrix.to/#/" + quote(room_id, safe="!:@#")
    if event_id:
        link += "/" + quote(event_id, safe="$:")
    return link + (f"?via={quote(via)}" if via else "")


class PublicSite:
    """The published rooms and their contents; implements :class:`civicbot.core.public.PublicPages`
    for plugins. Serving over HTTP is :mod:`civicbot.web.server`'s job."""

    def __init__(
        self,
        config: WebConfig,
        transport: Transport,
        db: Database,
        room_settings: RoomSettings,
        keyed_hash: Callable[[str], str],
        clock: Clock,
        collect: Collect,
        default_timezone: str,
    ):
        self.config = config
        self.transport = transport
        self.db = db
        self.room_settings = room_settings
        self.keyed_hash = keyed_hash
        self.clock = clock
        self.collect = collect
        self.default_timezone = default_timezone
        self.printer: Callable[[str], Awaitable[bytes]] | None = None
        self._slugs: dict[str, str] = {}
        # What the hooks returned, per room, until the room changes or cache_seconds pass:
        # a year of a room's items costs the plugins tens of milliseconds to gather, and most
        # requests are for a room nobody has spoken in since the last one.
        self._views: dict[str, tuple[float, RoomView]] = {}
        self._rooms: tuple[float, list[str]] | None = None
        # Bumped by every change of a room (and the epoch by a change of all): a gathering that
        # raced a change must not be kept.
        self._generations: dict[str, int] = {}
        self._epoch = 0

    async def start(self) -> None:
        await self.db.migrate("web", MIGRATIONS)

    @property
    def serving(self) -> bool:
        return self.config.serving

    @property
    def base_url(self) -> str:
        return self.config.public_url

    # -- freshness -----------------------------------------------------------------------------
    def touched(self, room_id: str) -> None:
        """Something happened in ``room_id``: its page is gathered afresh. The core calls this
        around every command there and whenever the bot is about to speak there, which is how
        a change made elsewhere shows (a private need sent by DM is announced in its room; a
        scheduled close posts the result)."""
        self._generations[room_id] = self._generations.get(room_id, 0) + 1
        if len(self._generations) > MAX_TRACKED_ROOMS:
            self._generations.clear()
            self._epoch += 1
        self._views.pop(room_id, None)
        self._rooms = None

    def invalidate(self) -> None:
        """Gather every page afresh (a person was forgotten: they may be on any of them)."""
        self._epoch += 1
        self._views.clear()
        self._rooms = None

    def _version(self, room_id: str) -> tuple[int, int]:
        return (self._epoch, self._generations.get(room_id, 0))

    def _fresh(self, stamp: float) -> bool:
        return self.clock.monotonic() - stamp < self.config.cache_seconds

    # -- which rooms ---------------------------------------------------------------------------
    def slug(self, room_id: str) -> str:
        found = self._slugs.get(room_id)
        if found is None:
            found = self.keyed_hash(f"web-room:{room_id}")[:SLUG_LENGTH]
            self._slugs[room_id] = found
        return found

    async def _config(self, room_id: str) -> WebConfig:
        config = await self.room_settings.get(room_id, WEB)
        assert isinstance(config, WebConfig)
        return config

    async def public_rooms(self) -> list[str]:
        """Rooms that opted in, the bot is still in, and that are not a DM."""
        if self._rooms is not None and self._fresh(self._rooms[0]):
            return self._rooms[1]
        stamp, epoch = self.clock.monotonic(), self._epoch
        found = await self._find_public_rooms()
        if epoch == self._epoch:
            self._rooms = (stamp, found)
        return found

    async def _find_public_rooms(self) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT room_id FROM core_room_settings WHERE plugin = ? AND key = 'public'", (WEB,)
        )
        try:
            joined = set(await self.transport.joined_rooms())
        except TransportError:
            return []
        found = []
        for row in rows:
            room_id = row["room_id"]
            if room_id in joined and await self.is_public(room_id):
                found.append(room_id)
        return sorted(found, key=self.slug)

    async def is_public(self, room_id: str) -> bool:
        if not (await self._config(room_id)).public:
            return False
        return not await self._is_direct(room_id)

    async def _is_direct(self, room_id: str) -> bool:
        """A DM is never published, whatever its settings say (the DM rule decides)."""
        try:
            members = await self.transport.joined_members(room_id)
            if len(members) > 2:
                return False
            me = self.transport.user_id
            for member in members:
                if member != me and await self.transport.is_direct_with(room_id, member):
                    return True
        except TransportError:
            return True  # unsure: not published
        return False

    async def room_for_slug(self, slug: str) -> str | None:
        for room_id in await self.public_rooms():
            if self.slug(room_id) == slug:
                return room_id
        return None

    # -- what a room shows ---------------------------------------------------------------------
    async def room_view(self, room_id: str) -> RoomView:
        """What the room's page shows (gathered again once the room changed)."""
        cached = self._views.get(room_id)
        if cached is not None and self._fresh(cached[0]):
            return cached[1]
        stamp, version = self.clock.monotonic(), self._version(room_id)
        view = await self.gather(room_id)
        if version == self._version(room_id):  # nothing changed while gathering
            self._views[room_id] = (stamp, view)
        return view

    async def gather(self, room_id: str) -> RoomView:
        """Every plugin's ``public_section`` for the room, names resolved."""
        config = await self._config(room_id)
        name = await self._state(room_id, "m.room.name", "name")
        topic = await self._state(room_id, "m.room.topic", "topic")
        via = self.transport.user_id.partition(":")[2]
        zone = await self.room_settings.get(room_id, "room")
        view = RoomView(
            room_id=room_id,
            slug=self.slug(room_id),
            name=name or "Neighbourhood room",
            topic=topic,
            join_url=matrix_link(room_id, via),
            via=via,
            zone=getattr(zone, "timezone", None) or self.default_timezone,
        )
        for _, section in await self.collect("public_section", room_id, room_id):
            if not isinstance(section, PublicSection):
                continue
            view.meetings.extend(section.meetings)
            view.decisions.extend(section.decisions)
            view.consultations.extend(section.consultations)
            view.offers.extend(section.offers)
            view.needs.extend(section.needs)
        view.meetings.sort(key=lambda m: m.starts[0] if m.starts else self.clock.now())
        view.decisions.sort(key=lambda d: d.decided_at, reverse=True)
        view.consultations.sort(key=_consultation_order)
        if config.names:
            view.names = await self._names(room_id, view)
        return view

    async def _state(self, room_id: str, event_type: str, key: str) -> str:
        try:
            content = await self.transport.state_event(room_id, event_type)
        except TransportError:
            return ""
        value = (content or {}).get(key)
        return value.strip() if isinstance(value, str) else ""

    async def _names(self, room_id: str, view: RoomView) -> dict[str, str]:
        """Display names of the people the page credits, only while they are members. A
        forgotten person's stand-in is no Matrix id, so it never becomes a name."""
        people: set[str] = {p.author for p in (*view.offers, *view.needs) if p.author}
        for c in view.consultations:
            people.update(u.author for u in c.updates)
        names = {}
        for person in people:
            if not (person.startswith("@") and ":" in person):
                continue
            try:
                member = await self.transport.state_event(room_id, "m.room.member", person)
            except TransportError:
                continue
            if not member or member.get("membership") != "join":
                continue
            shown = member.get("displayname")
            if isinstance(shown, str) and shown.strip():
                names[person] = shown.strip()[:64]
        return names

    # -- PublicPages, for plugins --------------------------------------------------------------
    async def room_url(self, room_id: str) -> str | None:
        if not self.serving or not await self.is_public(room_id):
            return None
        return f"{self.base_url}/r/{self.slug(room_id)}"

    async def calendar_url(self, user_id: str, reset: bool = False) -> str:
        row = await self.db.fetchone("SELECT salt FROM web_calendars WHERE person = ?", (user_id,))
        if row is not None and not reset:
            token = self._token(user_id, row["salt"])
        else:
            salt = secrets.token_hex(16)
            token = self._token(user_id, salt)
            await self.db.execute(
                "INSERT INTO web_calendars (person, salt, lookup, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (person) DO UPDATE SET salt = excluded.salt,"
                " lookup = excluded.lookup, created_at = excluded.created_at",
                (user_id, salt, self._lookup(token), int(time.time())),
            )
        return f"{self.base_url}/calendar/{token}.ics"

    def _token(self, user_id: str, salt: str) -> str:
        # Made again from the installation secret on each !calendar, so the database alone
        # never holds a working address.
        return self.keyed_hash(f"calendar:{salt}:{user_id}")[:40]

    def _lookup(self, token: str) -> str:
        return self.keyed_hash(f"calendar-lookup:{token}")

    async def person_for_token(self, token: str) -> str | None:
        if not token or len(token) > 64:
            return None
        row = await self.db.fetchone(
            "SELECT person, salt FROM web_calendars WHERE lookup = ?", (self._lookup(token),)
        )
        if row is None or not secrets.compare_digest(
            self._token(row["person"], row["salt"]), token
        ):
            return None
        return str(row["person"])

    async def export(self, user_id: str) -> dict[str, str] | None:
        row = await self.db.fetchone(
            "SELECT created_at FROM web_calendars WHERE person = ?", (user_id,)
        )
        if row is None:
            return None
        made = datetime.fromtimestamp(row["created_at"], UTC).isoformat().replace("+00:00", "Z")
        return {
            "calendar_feed": f"made {made}; its address is not stored (only a keyed hash of "
            "it): !calendar sends it to you again, !calendar reset replaces it",
        }

    async def forget(self, user_id: str) -> int:
        self.invalidate()  # their name and posts may be on any page
        return await self.db.execute_rowcount(
            "DELETE FROM web_calendars WHERE person = ?", (user_id,)
        )

    async def noticeboard_pdf(self, room_id: str) -> bytes:
        url = await self.room_url(room_id)
        if url is None:
            raise PublicError("This room has no public page, so it has no noticeboard.")
        if self.printer is None:
            raise PublicError("The public pages are not being served, so I can't print.")
        return await self.printer(room_id)


def _consultation_order(c: PublicConsultation) -> tuple[int, float]:
    """Open ones first (closing soonest), then the rest newest first."""
    if c.state == "open":
        return (0, c.closes_at.timestamp())
    latest = max([u.posted_at for u in c.updates], default=c.closes_at)
    return (1, -latest.timestamp())


def upcoming_dates(meetings: list[PublicMeeting]) -> list[tuple[datetime, PublicMeeting]]:
    """Every upcoming date of every meeting, soonest first."""
    dates = [(start, m) for m in meetings for start in m.starts]
    dates.sort(key=lambda pair: pair[0])
    return dates
