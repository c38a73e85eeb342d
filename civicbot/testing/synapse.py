"""A private Synapse homeserver on loopback, for integration tests and `civicbot demo`.

Everything here is synchronous (subprocess + urllib) so that it works from plain
pytest fixtures and from a command line before any event loop exists.

    with LocalSynapse(tmp_path) as hs:
        alice = hs.register("alice", "pw")
        token = hs.login_token(alice, "pw")
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = [
    "LocalSynapse",
    "MatrixHTTPError",
    "SynapseNotInstalled",
    "SynapseStartupError",
    "ensure_synapse_installed",
    "free_loopback_port",
    "port_taken",
]


def _lifted() -> dict[str, int]:
    # A fresh dict each time, so the YAML has no &anchors for a reader to chase.
    return {"per_second": 1000, "burst_count": 10000}


# Lift every rate limit Synapse 1.163 knows (synapse/config/ratelimiting.py).
# Left at the defaults, a test that sends a dozen messages gets 429s (0.2 msg/s,
# burst 10, admins included) and logins are limited to about five per account.
_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _lifted(),
    "rc_registration": _lifted(),
    "rc_registration_token_validity": _lifted(),
    "rc_login": {"address": _lifted(), "account": _lifted(), "failed_attempts": _lifted()},
    "rc_admin_redaction": _lifted(),
    "rc_joins": {"local": _lifted(), "remote": _lifted()},
    "rc_joins_per_room": _lifted(),
    "rc_key_requests": _lifted(),
    "rc_3pid_validation": _lifted(),
    "rc_invites": {"per_room": _lifted(), "per_user": _lifted(), "per_issuer": _lifted()},
    "rc_third_party_invite": _lifted(),
    "rc_media_create": _lifted(),
    "rc_presence": {"per_user": _lifted()},
    "rc_delayed_event_mgmt": _lifted(),
    "rc_room_creation": _lifted(),
    "rc_reports": _lifted(),
    "rc_user_directory": _lifted(),
    "rc_profile": _lifted(),
}

# Synapse logs to stderr, which start() sends to homeserver.log. WARNING keeps
# the file short enough that its tail is useful in an error message.
_LOG_CONFIG = """\
version: 1
formatters:
  plain:
    format: "%(asctime)s %(levelname)s %(name)s: %(message)s"
handlers:
  console:
    class: logging.StreamHandler
    formatter: plain
    stream: ext://sys.stderr
root:
  level: WARNING
  handlers: [console]
disable_existing_loggers: false
"""

# The child runs Synapse's own main() behind a watchdog thread: when this
# process dies for any reason (SIGKILL, a killed CI job) the pipe on the
# child's stdin reaches EOF and the child stops itself. atexit alone would not
# cover that, and a stray Synapse would hold its port and sqlite file.
_LAUNCHER = """\
import os, signal, sys, threading
sys.argv[0] = 'synapse.app.homeserver'  # shown in the log banner
def _watch_parent():
    while os.read(0, 4096):  # raw fd: a buffered stdin aborts at exit
        pass
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=_watch_parent, daemon=True).start()
from synapse.app.homeserver import main
main()
"""

_CONFIG_FILE = "homeserver.yaml"
_LOG_FILE = "homeserver.log"


class SynapseNotInstalled(RuntimeError):
    """matrix-synapse is not importable in this Python environment."""

    def __init__(self) -> None:
        super().__init__(
            "Synapse is not installed in this environment. "
            "Install it with: pip install 'civicbot[demo]'"
        )


class SynapseStartupError(RuntimeError):
    """Synapse exited or did not become healthy; the message ends with its log."""


class MatrixHTTPError(RuntimeError):
    """A Matrix HTTP endpoint answered with a non-2xx status.

    Shared by this module and civicbot.testing.client so callers catch one type.
    """

    def __init__(self, status: int, errcode: str | None, error: str | None) -> None:
        super().__init__(f"HTTP {status} {errcode or ''}: {error or ''}".strip())
        self.status = status
        self.errcode = errcode
        self.error = error


def ensure_synapse_installed() -> None:
    """Raise SynapseNotInstalled unless `import synapse` works."""
    try:
        import synapse  # noqa: F401
    except ImportError as exc:
        raise SynapseNotInstalled() from exc


def free_loopback_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_taken(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (bound as Synapse binds: with
    SO_REUSEADDR, so a port a stopped server left in TIME_WAIT counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# Servers started by this process; stopped at interpreter exit.
_RUNNING: set[LocalSynapse] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        try:
            server.stop()
        except Exception:
            pass  # best effort during interpreter exit


class LocalSynapse:
    """One Synapse process serving the client API on 127.0.0.1.

    All state (config, signing key, sqlite database, media, log) lives in
    base_dir, so stop() then start() brings back the same users and rooms on
    the same URL.
    """

    def __init__(
        self, base_dir: Path, port: int | None = None, server_name: str = "localhost"
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.server_name = server_name
        self.port = port if port is not None else free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = self.base_dir / _CONFIG_FILE
        self.log_path = self.base_dir / _LOG_FILE
        # Reuse the secret of an earlier run in the same directory so a
        # restarted demo can still register users.
        self.registration_secret = self._existing_secret() or secrets.token_hex(32)
        self._proc: subprocess.Popen[bytes] | None = None
        self._configured = False

    # ----------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        """True while the Synapse child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60) -> None:
        """Start Synapse (writing its config on first use) and wait for /health."""
        if self.running:
            return
        self.stop()  # reap a server that died on its own and close its pipe
        # Another server on our port would answer our health check while ours fails to bind.
        if port_taken(self.port):
            raise SynapseStartupError(
                f"port {self.port} is in use on 127.0.0.1 (another homeserver, or another demo?)"
            )
        ensure_synapse_installed()
        if not self._configured:
            self._write_config()
            self._configured = True

        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, "-c", str(self.config_path)],
                cwd=self.base_dir,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: a terminal's Ctrl-C reaches only us, and
                # we stop Synapse after the bot has had its say.
                start_new_session=True,
            )
        finally:
            log.close()  # the child has its own copy of the descriptor
        _RUNNING.add(self)

        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 20) -> None:
        """Stop Synapse: SIGTERM, then SIGKILL after timeout. Safe to repeat."""
        proc, self._proc = self._proc, None
        _RUNNING.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()

    def __enter__(self) -> LocalSynapse:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                raise SynapseStartupError(
                    f"Synapse exited with code {code} during startup.\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.read().strip() == b"OK":
                        return
            except (OSError, urllib.error.URLError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise SynapseStartupError(
                    f"Synapse not healthy at {self.url} after {timeout:.0f}s.\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of homeserver.log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}"

    # -------------------------------------------------------------- config files

    def _existing_secret(self) -> str | None:
        if not self.config_path.exists():
            return None
        import yaml  # a Synapse dependency; only needed when a config exists

        data = yaml.safe_load(self.config_path.read_text()) or {}
        secret = data.get("registration_shared_secret")
        return secret if isinstance(secret, str) else None

    def _write_config(self) -> None:
        """Write homeserver.yaml and the log config; create the key only once."""
        import yaml

        self.base_dir.mkdir(parents=True, exist_ok=True)
        key_path = self.base_dir / "signing.key"
        if not key_path.exists():
            self._write_signing_key(key_path)
        log_config = self.base_dir / "log_config.yaml"
        log_config.write_text(_LOG_CONFIG)

        config: dict[str, Any] = {
            "server_name": self.server_name,
            "public_baseurl": self.url + "/",
            "pid_file": str(self.base_dir / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {
                "name": "sqlite3",
                "args": {"database": str(self.base_dir / "homeserver.db")},
            },
            "media_store_path": str(self.base_dir / "media_store"),
            "signing_key_path": str(key_path),
            "log_config": str(log_config),
            # Everything already goes to stderr -> homeserver.log.
            "no_redirect_stdio": True,
            "registration_shared_secret": self.registration_secret,
            "enable_registration": False,
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "presence": {"enabled": False},
            # bcrypt's default 12 rounds cost ~0.25 s per register/login;
            # these are throwaway test passwords.
            "bcrypt_rounds": 4,
            **_RATE_LIMITS,
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    @staticmethod
    def _write_signing_key(path: Path) -> None:
        # The same calls `--generate-keys` makes, without a second interpreter start.
        from signedjson.key import generate_signing_key, write_signing_keys

        key = generate_signing_key("a_" + secrets.token_hex(2))
        with open(path, "w") as f:
            write_signing_keys(f, [key])

    # ----------------------------------------------------------------- accounts

    def register(self, localpart: str, password: str, admin: bool = False) -> str:
        """Create a user with the shared-secret admin API; return its full id.

        An existing user is not an error: its id is returned as is.
        """
        path = "/_synapse/admin/v1/register"
        nonce = self._request("GET", path)["nonce"]
        mac = hmac.new(self.registration_secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, localpart, password):
            mac.update(part.encode("utf-8"))
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        try:
            return str(self._request("POST", path, body)["user_id"])
        except MatrixHTTPError as exc:
            if exc.errcode == "M_USER_IN_USE":
                return f"@{localpart}:{self.server_name}"
            raise

    def login_token(self, user_id: str, password: str) -> str:
        """Log in with a password and return a fresh access token."""
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
        }
        return str(self._request("POST", "/_matrix/client/v3/login", body)["access_token"])

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return dict(json.load(resp))
        except urllib.error.HTTPError as exc:
            try:
                err = json.load(exc)
            except ValueError:
                err = {}
            raise MatrixHTTPError(exc.code, err.get("errcode"), err.get("error")) from None
