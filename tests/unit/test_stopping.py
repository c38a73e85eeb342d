"""A stop asked for at any moment is honoured: SIGTERM must not wait out a login retried through
an outage (up to ten minutes of backoff), which is what a service manager sends at shutdown."""

import signal
import subprocess
import sys

from civicbot.testing.synapse import free_loopback_port


def test_sigterm_while_the_homeserver_is_unreachable_stops_cleanly(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[matrix]\nhomeserver = "http://127.0.0.1:{free_loopback_port()}"\n'
        'user_id = "@bot:localhost"\npassword = "x"\n'
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
    )
    bot = subprocess.Popen(
        [sys.executable, "-m", "civicbot", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert bot.stdout is not None
        seen = []
        for line in bot.stdout:  # wait until it is retrying the login, however long that takes
            seen.append(line)
            if "login: unreachable" in line:
                break
        else:
            raise AssertionError("".join(seen))
        bot.send_signal(signal.SIGTERM)
        rest, _ = bot.communicate(timeout=60)  # before the fix: ten minutes of retries
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait()
    assert bot.returncode == 0, "".join(seen) + rest
    assert "Traceback" not in "".join(seen) + rest


class _Transport:
    def __init__(self) -> None:
        self.stop_requested = False

    def request_stop(self) -> None:
        self.stop_requested = True


def test_a_second_signal_stops_at_once(monkeypatch):
    """The first SIGTERM finishes what is in flight; a second one (an operator pressing Ctrl-C
    again) must not be ignored: everything unfinished is replayed at the next start."""
    from civicbot.app import runtime

    exits: list[int] = []
    monkeypatch.setattr(runtime.os, "_exit", exits.append)
    monkeypatch.setattr(runtime.logging, "shutdown", lambda: None)  # pytest's handlers stay
    transport = _Transport()
    runtime._request_stop(signal.SIGTERM, transport)  # type: ignore[arg-type]
    assert transport.stop_requested and exits == []
    runtime._request_stop(signal.SIGINT, transport)  # type: ignore[arg-type]
    assert exits == [128 + signal.SIGINT.value]
