"""The public pages over HTTP: a small read-only aiohttp server inside the bot process.

Read-only and without logins: a room's page, everything of it, one item, the noticeboard, the
room's calendar feed, a person's secret calendar feed, and the stylesheets. Every response
carries a Content-Security-Policy that allows no script and no outside resource, caching
headers with an ETag (so a proxy or browser asking again gets a 304), and each client (by IP,
through a reverse proxy on loopback by its ``X-Forwarded-For``) has a token bucket of requests.

It runs on the bot's event loop: rendering is quick (see ``bench/bench_web.py``), and the bot
keeps answering while it serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiohttp import web

from civicbot.web import render
from civicbot.web.feeds import merge_calendars
from civicbot.web.site import PublicSite, RoomView

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
HTML = "text/html; charset=utf-8"
ICS = "text/calendar; charset=utf-8"
LABEL = re.compile(r"^[MPCON]-\d{1,9}$", re.IGNORECASE)
MAX_CLIENTS = 10_000
# Requests handled at once; the rest wait their turn outside the event loop's ready queue, so
# a burst of page views delays the bot's answers in the rooms by a few requests at most.
IN_FLIGHT = 4

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RequestLimiter:
    """A token bucket per client: ``burst`` at once, refilled at ``per_minute``."""

    def __init__(self, burst: int, per_minute: float, clock: Callable[[], float] = time.monotonic):
        self.burst = burst
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def admit(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        now = self.clock()
        tokens, then = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait


def client_of(request: web.Request, trust_proxy: bool) -> str:
    remote = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if trust_proxy and forwarded and _is_loopback(remote):
        # The proxy appends the address it saw: the last entry is the one not made up.
        return forwarded.rsplit(",", 1)[-1].strip() or remote
    return remote


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class PublicServer:
    """The routes and what every response carries."""

    def __init__(self, site: PublicSite):
        self.site = site
        config = site.config
        self.limiter = RequestLimiter(config.requests_burst, config.requests_per_minute)
        self.cache_seconds = config.cache_seconds
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)
        self.app = web.Application(middlewares=[self._limits, self._headers])
        self.app.add_routes([
            web.get("/", self.index),
            web.get("/static/{name}", self.static),
            web.get("/r/{slug}", self.room),
            web.get("/r/{slug}/all", self.everything),
            web.get("/r/{slug}/noticeboard", self.noticeboard),
            web.get("/r/{slug}/calendar.ics", self.room_calendar),
            web.get("/r/{slug}/{label}", self.item),
            web.get("/calendar/{token}.ics", self.personal_calendar),
        ])  # fmt: skip
        self._css = {
            "site.css": render.stylesheet(),
            "noticeboard.css": (render.TEMPLATES / "noticeboard.css").read_bytes(),
        }

    # -- middleware ----------------------------------------------------------------------------
    @web.middleware
    async def _limits(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        wait = self.limiter.admit(client_of(request, self.site.config.trust_proxy))
        if wait:
            return web.Response(
                status=429,
                text="Too many requests: please wait a moment.\n",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        async with self._in_flight:
            try:
                return await handler(request)
            except web.HTTPNotFound:
                return self._not_found()

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        headers = response.headers
        headers["Content-Security-Policy"] = CSP
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
        headers.setdefault("Cache-Control", f"public, max-age={self.cache_seconds}")
        if isinstance(response, web.Response) and response.status == 200 and response.body:
            body = response.body if isinstance(response.body, bytes) else b""
            tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            headers["ETag"] = tag
            if tag in request.headers.get("If-None-Match", ""):
                return web.Response(status=304, headers={k: v for k, v in headers.items()
                                                         if k != "Content-Type"})  # fmt: skip
        return response

    def _not_found(self) -> web.Response:
        return web.Response(status=404, text=render.not_found_page(), content_type="text/html",
                            charset="utf-8")  # fmt: skip

    # -- pages ---------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        rooms = []
        for room_id in await self.site.public_rooms():
            view = await self.site.room_view(room_id)  # kept until the room changes
            rooms.append((f"/r/{view.slug}", view.name, view.topic))
        return _html(render.index_page(rooms))

    async def static(self, request: web.Request) -> web.Response:
        body = self._css.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="text/css", charset="utf-8",
                            headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip

    async def _room(self, request: web.Request) -> str:
        room_id = await self.site.room_for_slug(request.match_info["slug"])
        if room_id is None:
            raise web.HTTPNotFound()
        return room_id

    async def room(self, request: web.Request) -> web.Response:
        view = await self.site.room_view(await self._room(request))
        return _html(_page(view, request.path, lambda: render.room_page(
            view, self._base(request), self.site.clock.now())))  # fmt: skip

    async def everything(self, request: web.Request) -> web.Response:
        view = await self.site.room_view(await self._room(request))
        return _html(_page(view, request.path, lambda: render.room_page(
            view, self._base(request), self.site.clock.now(), everything=True)))  # fmt: skip

    async def item(self, request: web.Request) -> web.Response:
        label = request.match_info["label"]
        if not LABEL.match(label):
            raise web.HTTPNotFound()
        view = await self.site.room_view(await self._room(request))
        found = view.item(label)
        if found is None:
            raise web.HTTPNotFound()
        return _html(_page(view, request.path, lambda: render.item_page(
            view, found, self._base(request), self.site.clock.now())))  # fmt: skip

    async def noticeboard(self, request: web.Request) -> web.Response:
        view = await self.site.room_view(await self._room(request))
        return _html(_page(view, request.path, lambda: render.noticeboard_page(
            view, self._base(request), self.site.clock.now())))  # fmt: skip

    async def room_calendar(self, request: web.Request) -> web.Response:
        view = await self.site.room_view(await self._room(request))
        body = merge_calendars(view.name, (m.calendar for m in view.meetings))
        disposition = {"Content-Disposition": 'inline; filename="meetings.ics"'}
        return web.Response(
            body=body, content_type="text/calendar", charset="utf-8", headers=disposition
        )

    async def personal_calendar(self, request: web.Request) -> web.Response:
        person = await self.site.person_for_token(request.match_info["token"])
        if person is None:
            raise web.HTTPNotFound()
        files: list[bytes] = []
        for _, found in await self.site.collect("personal_calendar", None, person):
            files.extend(f for f in found if isinstance(f, bytes))
        body = merge_calendars("My meetings", files)
        # Only for the person: no shared cache may keep it.
        return web.Response(body=body, content_type="text/calendar", charset="utf-8",
                            headers={"Cache-Control": "private, max-age=300"})  # fmt: skip

    def _base(self, request: web.Request) -> str:
        """Links in pages are absolute to the public address (they are printed, too)."""
        return self.site.base_url


def _page(view: RoomView, path: str, make: Callable[[], str]) -> str:
    """A page of ``view``, rendered once for as long as the view is current."""
    found = view.pages.get(path)
    if found is None:
        found = view.pages[path] = make()
    return found


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", charset="utf-8")


class WebListenError(Exception):
    """The public pages cannot be served where ``[web] listen`` says (a port in use)."""


async def start_server(site: PublicSite, host: str, port: int) -> web.AppRunner:
    """Listen on ``host:port``; the caller cleans the runner up at the end. Raises
    :class:`WebListenError`, saying what to change, when the address cannot be had."""
    server = PublicServer(site)
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise WebListenError(
            f"cannot serve the public pages on {host}:{port}: {exc.strerror or exc} "
            "(set [web] listen to a free port)"
        ) from exc
    log.info("public pages at %s (listening on %s:%s)", site.base_url or "-", host, port)
    return runner
