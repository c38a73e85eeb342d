"""Calls to the homeserver that survive outages and rate limits.

nio retries a 429 forever and gives up on a network error at once; here both are retried with
capped backoff (honouring ``retry_after_ms``) up to a deadline, keeping the caller's
transaction id so a retried send is never duplicated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import ClientError
from nio import AsyncClient
from nio.exceptions import LocalProtocolError

from civicbot.transport import TransportError

log = logging.getLogger("civicbot.transport.matrix")
T = TypeVar("T")

MAX_BACKOFF_S = 30.0
SEND_DEADLINE_S = 600.0
SLOW_CALL_S = 10.0  # a call unanswered this long is logged while it waits
NETWORK_ERRORS = (OSError, ClientError, asyncio.TimeoutError, LocalProtocolError)


class Backoff:
    """Capped exponential backoff with jitter: 0.5 s, 1 s, 2 s … up to ``cap``."""

    def __init__(self, start: float = 0.5, cap: float = MAX_BACKOFF_S):
        self._start, self._cap, self._next = start, cap, start

    def reset(self) -> None:
        self._next = self._start

    def next(self, hint_ms: int | None = None) -> float:
        if hint_ms:
            return min(hint_ms / 1000, self._cap * 4)
        delay = self._next
        self._next = min(self._next * 2, self._cap)
        return delay * random.uniform(0.8, 1.2)


class HomeserverApi:
    """Retried nio calls and raw client-server API requests for one logged-in client."""

    def __init__(self, client: AsyncClient):
        self.client = client

    async def retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Retry through outages and rate limits (honouring retry-after) up to a deadline."""
        backoff = Backoff()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SEND_DEADLINE_S
        while True:
            # A call the homeserver has not answered for a while is said in the log while it
            # waits (nio's own timeout is a minute): a stuck join or send is then visible.
            started = loop.time()
            slow = loop.call_later(SLOW_CALL_S, _still_waiting, what, loop, started)
            try:
                result = await call()
            except NETWORK_ERRORS as exc:
                _took(what, loop, started, "gave no answer")
                hint, reason = None, f"unreachable ({exc or type(exc).__name__})"
            else:
                _took(what, loop, started, "answered")
                code = getattr(result, "status_code", None)
                status = getattr(getattr(result, "transport_response", None), "status", 200)
                if code != "M_LIMIT_EXCEEDED" and status != 429 and status < 500:
                    return result
                hint, reason = getattr(result, "retry_after_ms", None), f"{code or status}"
            finally:
                slow.cancel()
            if loop.time() > deadline:
                raise TransportError(f"{what}: gave up after {SEND_DEADLINE_S:.0f}s ({reason})")
            delay = backoff.next(hint)
            log.warning("%s: %s; retrying in %.1fs", what, reason, delay)
            await asyncio.sleep(delay)

    async def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A raw client-server API call, retried like sends; raises on a refusal."""
        data = await self.request_any(method, path, body)
        return data if isinstance(data, dict) else {}

    async def request_list(self, path: str) -> list[dict[str, Any]]:
        """A GET whose answer is a JSON list (``/state``); [] when it is anything else."""
        data = await self.request_any("GET", path)
        return data if isinstance(data, list) else []

    async def request_any(self, method: str, path: str, body: Any = None) -> Any:
        """A raw call returning whatever JSON the homeserver answered with."""
        status, data = await self.request_status(method, path, body)
        if status >= 400:
            error = data if isinstance(data, dict) else {}
            raise TransportError(error.get("error", f"HTTP {status}"), error.get("errcode", ""))
        return data

    async def request_status(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A raw call whose refusals are answers too: (HTTP status, JSON). For user-interactive
        auth, where a 401 carries the session and the flows the next request needs."""

        async def call() -> Any:
            payload = json.dumps(body) if body is not None else None
            headers = {
                "Authorization": f"Bearer {self.client.access_token}",
                "Content-Type": "application/json",
            }
            response = await self.client.send(method, path, payload, headers)
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = {}
            return _Raw(response.status, data)

        raw = await self.retry(f"{method} {path.split('?')[0]}", call)
        return raw.status, raw.data


def _took(what: str, loop: asyncio.AbstractEventLoop, started: float, outcome: str) -> None:
    """Say how long a slow call took, once it has an outcome (nio's own 429 sleeps included)."""
    took = loop.time() - started
    if took > SLOW_CALL_S:
        log.warning("%s: the homeserver %s after %.1fs", what, outcome, took)


def _still_waiting(what: str, loop: asyncio.AbstractEventLoop, started: float) -> None:
    log.warning("%s: no answer from the homeserver for %.0fs; waiting", what, loop.time() - started)


class _Raw:
    """A raw response shaped like nio's, for :meth:`HomeserverApi.retry`."""

    def __init__(self, status: int, data: Any):
        self.status = status
        self.data = data
        error = data if isinstance(data, dict) and status >= 400 else {}
        self.status_code = error.get("errcode")
        self.retry_after_ms = error.get("retry_after_ms")
        self.transport_response = self  # retry() reads .transport_response.status
