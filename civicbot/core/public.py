"""What a room shows the world: the typed items plugins hand the public web pages, and the
narrow service plugins reach those pages through.

A plugin implements :meth:`~civicbot.core.plugin.Plugin.public_section` and returns a
:class:`PublicSection` holding only what the room already shows its members: never who asked
for something privately, never a forgotten person, never anything from a direct chat. People
appear as the Matrix ids of those who posted publicly in the room (``author``); the web pages
turn them into display names, or into nothing when the room chose ``web.names false``, and a
stand-in for a forgotten person is never shown. Event ids point at the message in the room.

Plugins import these types (through :mod:`civicbot.core.plugin`), never :mod:`civicbot.web`; the
web package calls the hook and never imports a plugin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class PublicMeeting:
    """A fixed meeting and its next dates. ``calendar`` is the meeting's own RFC 5545 file
    (the one the meetings plugin posts), which the feeds merge: same UID, same SEQUENCE."""

    label: str  # "M-3"
    title: str
    starts: tuple[datetime, ...]  # upcoming occurrences (UTC), soonest first
    duration_minutes: int
    timezone: str
    place: str = ""
    url: str = ""  # an online meeting's link
    event_id: str | None = None  # its announcement in the room
    moved: bool = False  # its time changed since it was first fixed
    calendar: bytes = b""


@dataclass(frozen=True)
class PublicCount:
    """One option of a decided poll and its votes."""

    text: str
    count: int
    percent: int
    winner: bool = False


@dataclass(frozen=True)
class PublicDecision:
    """A closed poll with its published result (as posted in the room) and outcome."""

    label: str  # "P-12"
    question: str
    decided_at: datetime
    headline: str  # "Winner: Saturday." / "✅ Agreed" / turnout only for a small secret ballot
    turnout: str
    counts: tuple[PublicCount, ...] = ()
    outcome: str = ""
    outcome_at: datetime | None = None
    event_id: str | None = None  # the results message


@dataclass(frozen=True)
class PublicUpdate:
    """The council's response to a consultation, or a later update."""

    kind: str  # "response" or "update"
    status: str
    text: str
    author: str  # the councillor, who posted it in the room
    posted_at: datetime


@dataclass(frozen=True)
class PublicConsultation:
    """A consultation, and for a closed one what was heard: the public summary only, with
    every threshold the room's summary honours (``heard`` is empty when it withheld counts)."""

    label: str  # "C-2"
    title: str
    description: str
    state: str  # open, closed, responded, updated: …
    closes_at: datetime
    respondents: int | None = None  # None while open (the room is not told mid-way)
    heard: tuple[str, ...] = ()  # lines of the summary: counts, common ground, splits
    withheld: str = ""  # why only the turnout is given
    updates: tuple[PublicUpdate, ...] = ()
    event_id: str | None = None  # the consultation's post (its thread holds the rest)


@dataclass(frozen=True)
class PublicPost:
    """An open offer or need. ``author`` is None for a private need, always: who asked is
    never on the page, not even to the page's code."""

    label: str  # "O-7" / "N-42"
    kind: str  # "offer" or "need"
    text: str
    details: str = ""  # "this week · moving · Elm Road"
    author: str | None = None
    posted_at: datetime | None = None
    event_id: str | None = None  # the bot's announcement in the room


@dataclass(frozen=True)
class PublicSection:
    """One plugin's part of a room's public page; a plugin fills the kinds it has."""

    meetings: tuple[PublicMeeting, ...] = ()
    decisions: tuple[PublicDecision, ...] = ()
    consultations: tuple[PublicConsultation, ...] = ()
    offers: tuple[PublicPost, ...] = ()
    needs: tuple[PublicPost, ...] = ()


class PublicPages(Protocol):
    """The public web pages as a plugin may use them (``PluginContext.public``)."""

    @property
    def serving(self) -> bool:
        """Whether the operator switched the web server on."""

    async def room_url(self, room_id: str) -> str | None:
        """The room's public page, or None when the room has not opted in (or is a DM)."""

    async def calendar_url(self, user_id: str, reset: bool = False) -> str:
        """The person's private calendar feed (a secret URL), made when first asked for;
        ``reset`` makes a new one and the old one stops working at once."""

    async def noticeboard_pdf(self, room_id: str) -> bytes:
        """The room's printable noticeboard as a one-page A4 PDF (raises :class:`PublicError`)."""

    async def export(self, user_id: str) -> dict[str, str] | None:
        """What is kept about the person (``!mydata``): whether they have a calendar feed."""

    async def forget(self, user_id: str) -> int:
        """Drop the person's calendar feed (``!forget me``); how many rows went."""


class PublicError(Exception):
    """A public page could not be made; the message is for the person who asked."""
