"""The HTTP half of a test resident: a logged-in Matrix user speaking raw client-server JSON."""

from __future__ import annotations

import json
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from yarl import URL

from civicbot.testing.synapse import MatrixHTTPError

Event = dict[str, Any]
U = TypeVar("U", bound="MatrixUser")
MAX_POLL_S = 10.0  # upper bound for one long-poll, so a wait notices its deadline promptly


def _q(part: str) -> str:
    """Quote one path segment: room ids, event ids and state keys hold ! $ : @ /."""
    return quote(part, safe="")


class MatrixUser:
    """One Matrix account and its aiohttp session; :class:`~civicbot.testing.client.Resident`
    adds rooms, events and sync."""

    def __init__(self, homeserver: str, user_id: str, access_token: str) -> None:
        self.homeserver = homeserver.rstrip("/")
        self.user_id = user_id
        self.access_token = access_token
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    async def login(cls: type[U], homeserver: str, user_id: str, password: str) -> U:
        """Log in with a password and return a Resident using the new token."""
        resident = cls(homeserver, user_id, access_token="")
        try:
            resp = await resident._request(
                "POST",
                "/_matrix/client/v3/login",
                {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": user_id},
                    "password": password,
                    "initial_device_display_name": "civicbot test resident",
                },
            )
        except BaseException:
            await resident.close()
            raise
        resident.access_token = resp["access_token"]
        resident.user_id = resp["user_id"]
        return resident

    async def close(self) -> None:
        """Close the HTTP session. The access token stays valid."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self: U) -> U:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ account
    async def room_state(self, room_id: str) -> list[Event]:
        """The room's whole current state, as ``GET /rooms/{id}/state`` returns it."""
        resp = await self._request_any("GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/state")
        return list(resp) if isinstance(resp, list) else []

    async def account_data(self, event_type: str) -> dict[str, Any]:
        """This user's global account data of ``event_type`` ({} when unset)."""
        try:
            return await self._request(
                "GET",
                f"/_matrix/client/v3/user/{_q(self.user_id)}/account_data/{_q(event_type)}",
            )
        except MatrixHTTPError as exc:
            if exc.status == 404:
                return {}
            raise

    # -------------------------------------------------------------------- HTTP

    async def download(self, mxc_url: str) -> bytes:
        """The bytes of an uploaded file (``mxc://server/id``), as a client downloads it:
        authenticated media first (Synapse's default since 1.111), else the legacy path."""
        if not mxc_url.startswith("mxc://"):
            raise ValueError(f"not an mxc:// URL: {mxc_url!r}")
        server, _, media_id = mxc_url.removeprefix("mxc://").partition("/")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=MAX_POLL_S + 30)
            )
        headers = {"Authorization": f"Bearer {self.access_token}"}
        tail = f"{_q(server)}/{_q(media_id)}"
        status, text = 0, ""
        for prefix in ("/_matrix/client/v1/media/download/", "/_matrix/media/v3/download/"):
            url = URL(self.homeserver + prefix + tail, encoded=True)
            async with self._session.get(url, headers=headers) as resp:
                if resp.status == 200:
                    return await resp.read()
                status, text = resp.status, (await resp.text())[:200]
        raise MatrixHTTPError(status, None, text)

    async def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Call the homeserver; return the JSON body or raise MatrixHTTPError."""
        data = await self._request_any(method, path, body, params)
        if not isinstance(data, dict):
            raise MatrixHTTPError(200, None, f"expected a JSON object, got {type(data).__name__}")
        return data

    async def _request_any(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """Call the homeserver; return the JSON body (object or list) or raise."""
        if self._session is None:
            # Created lazily: aiohttp wants a running event loop.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=MAX_POLL_S + 30)
            )
        headers = {}
        if self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        # encoded=True: keep our %-escapes of ! $ : @ exactly as quoted.
        url = URL(self.homeserver + path, encoded=True)
        async with self._session.request(
            method, url, json=body, params=params, headers=headers
        ) as resp:
            try:
                data = await resp.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError):
                data = None
            if resp.status >= 300 or not isinstance(data, dict | list):
                err = data if isinstance(data, dict) else {}
                raise MatrixHTTPError(
                    resp.status,
                    err.get("errcode"),
                    err.get("error") or (await resp.text())[:200],
                )
            return data
