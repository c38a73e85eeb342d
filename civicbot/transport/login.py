"""Logging the bot in, and keeping its device: the session (``session.json``) and, with
encryption, the device's key store (``crypto/``), which belong together.

A device whose published keys are no longer in our store can never decrypt again, nor upload
new keys ("One time key ... already exists"): the bot then logs in as a new device, says so
in the log, and logs the old one out (DESIGN.md §4). With ``matrix.access_token`` the token
fixes the device, so a lost store stops the start with one line instead.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from nio import AsyncClient, KeysUploadError, LoginResponse, WhoamiResponse

from civicbot.config import MatrixSettings
from civicbot.storage.secret_key import SESSION_FILE
from civicbot.transport import TransportError
from civicbot.transport.crypto import STORE_DIR, store_file
from civicbot.transport.http import HomeserverApi

log = logging.getLogger("civicbot.transport.matrix")


class DeviceLogin:
    """Logs one client in as the bot's device, keeping the session and store together."""

    def __init__(
        self,
        settings: MatrixSettings,
        data_dir: Path,
        client: AsyncClient,
        api: HomeserverApi,
        encrypted: bool,
        store_session: bool = True,
    ):
        self.settings = settings
        self.data_dir = data_dir
        self.encrypted = encrypted
        self.store_session = store_session
        self._client = client
        self._api = api

    @property
    def session_file(self) -> Path:
        return self.data_dir / SESSION_FILE

    @property
    def store_dir(self) -> Path:
        return self.data_dir / STORE_DIR

    async def log_in(self) -> str:
        """Log in (token, saved session or password); returns the bot's user id."""
        token = self.settings.access_token.get_secret_value()
        if token:
            self._client.access_token = token
            who = await self._api.retry("whoami", self._client.whoami)
            if not isinstance(who, WhoamiResponse):
                raise TransportError(f"the access token was refused: {who}")
            device = who.device_id or ""
            if await self._store_lost(who.user_id, device):
                # The token fixes the device: we cannot log in as a new one instead.
                raise TransportError(
                    f"matrix.access_token is for device {device}, whose encryption keys are "
                    f"not in {self.store_dir} (a new or restored data_dir?): restore the data "
                    "directory from a backup, or make a new access token (or use "
                    "matrix.password) so the bot starts as a new device"
                )
            self._client.restore_login(who.user_id, device, token)
            return str(who.user_id)
        saved = self.load_session()
        if saved:
            self._client.access_token = saved["access_token"]
            try:
                lost = await self._store_lost(saved["user_id"], saved["device_id"])
            except TransportError as exc:
                if exc.errcode != "M_UNKNOWN_TOKEN":
                    raise
                log.warning("the homeserver logged our saved session out; logging in again")
                lost, saved = False, None
            if saved and not lost:
                self._client.restore_login(
                    saved["user_id"], saved["device_id"], saved["access_token"]
                )
                return saved["user_id"]
            if saved:
                log.warning(
                    "the encryption keys of device %s are missing from %s: logging in as a new "
                    "device. Encrypted messages sent before now cannot be read by the new "
                    "device (restore data_dir from a backup to keep them).",
                    saved["device_id"],
                    self.store_dir,
                )
                await self._log_out_quietly()
        password = self.settings.password.get_secret_value()
        if not password:
            raise TransportError("set matrix.password or matrix.access_token to log in")
        self._client.access_token = ""
        response = await self._api.retry(
            "login", lambda: self._client.login(password, device_name=self.settings.device_name)
        )
        if not isinstance(response, LoginResponse):
            raise TransportError(f"login failed: {getattr(response, 'message', response)}")
        self.save_session(response.user_id, response.device_id, response.access_token)
        log.info("logged in as %s (device %s)", response.user_id, response.device_id)
        return str(response.user_id)

    async def _store_lost(self, user_id: str, device_id: str) -> bool:
        """Whether this device has published encryption keys that our store no longer holds.
        Such a device can never decrypt again (nor upload new keys): a device without keys
        yet, such as one from before encryption was switched on, simply gets a new store."""
        if not self.encrypted or store_file(self.store_dir, user_id, device_id).exists():
            return False
        data = await self._api.request(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {user_id: [device_id]}}
        )
        return device_id in ((data.get("device_keys") or {}).get(user_id) or {})

    async def _log_out_quietly(self) -> None:
        """End the session whose keys are lost, so people's clients stop encrypting for it."""
        try:
            await self._api.request("POST", "/_matrix/client/v3/logout", {})
        except TransportError as exc:
            log.info("could not log the old device out: %s", exc)
        self.session_file.unlink(missing_ok=True)

    async def upload_device_keys(self) -> None:
        """Publish the device's identity and one-time keys (at the first start, and whenever
        the homeserver holds too few one-time keys)."""
        if not self._client.should_upload_keys:
            return
        response = await self._api.retry("upload keys", self._client.keys_upload)
        if isinstance(response, KeysUploadError):
            raise TransportError(
                f"the homeserver refused the encryption keys of device {self._client.device_id} "
                f"({response.message}): the store in {self.store_dir} is not that device's; "
                f"move {self.session_file.name} away to start as a new device, or restore "
                "data_dir from a backup"
            )

    def load_session(self) -> dict[str, str] | None:
        try:
            data = json.loads(self.session_file.read_text())
        except (OSError, ValueError):
            return None
        if (
            data.get("homeserver") != self.settings.homeserver
            or data.get("user_id") != self.settings.user_id
        ):
            return None
        return data

    def save_session(self, user_id: str, device_id: str, token: str) -> None:
        if not self.store_session:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.session_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(
                {
                    "homeserver": self.settings.homeserver,
                    "user_id": user_id,
                    "device_id": device_id,
                    "access_token": token,
                },
                handle,
            )
        os.replace(tmp, self.session_file)
