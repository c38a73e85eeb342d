"""A demo that cannot start says why in a line, and starts nothing. A second `civicbot demo` on
a folder or a port already in use found the first demo's homeserver answering on the port, took
it for its own, printed the logins and ended in a traceback when the bot's folder turned out
locked; a folder it could not make, or public pages on a port in use, ended in tracebacks too."""

from __future__ import annotations

import socket

import pytest

import civicbot.app.demo as demo
from civicbot.app.cli import main
from civicbot.storage.data_lock import DataDirLock
from civicbot.testing.harness import BotHarness
from civicbot.testing.synapse import LocalSynapse, SynapseStartupError, free_loopback_port
from civicbot.web.server import WebListenError, start_server


@pytest.fixture
def listening():
    """A port something already listens on, as a running demo's homeserver would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_demo_on_a_folder_a_running_bot_holds_says_so_and_starts_nothing(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(demo, "ensure_synapse_installed", lambda: None)
    running = DataDirLock(tmp_path / "bot")
    running.acquire()  # the first demo's bot
    try:
        code = main(["demo", "--dir", str(tmp_path), "--port", str(free_loopback_port())])
    finally:
        running.release()
    err = capsys.readouterr().err
    assert code == 1
    assert f"another civicbot is running on {tmp_path}" in err and "--dir DIR" in err
    assert "Traceback" not in err
    assert not (tmp_path / "synapse").exists()  # no homeserver was started or configured


def test_a_homeserver_port_in_use_is_refused_before_anything_starts(tmp_path, listening):
    synapse = LocalSynapse(tmp_path / "synapse", port=listening)
    with pytest.raises(SynapseStartupError, match=f"port {listening} is in use"):
        synapse.start()
    assert not synapse.running and not (tmp_path / "synapse").exists()


def test_a_demo_on_a_port_in_use_says_so_in_a_line(tmp_path, capsys, monkeypatch, listening):
    monkeypatch.setattr(demo, "ensure_synapse_installed", lambda: None)
    web = free_loopback_port()
    code = main(["demo", "--dir", str(tmp_path), "--port", str(listening), "--web-port", str(web)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"port {listening} (the homeserver) is in use" in err
    assert "--port N --web-port M" in err and "Traceback" not in err
    assert not (tmp_path / "synapse").exists()


def test_a_demo_whose_public_pages_port_is_in_use_says_so_before_it_starts(
    tmp_path, capsys, monkeypatch, listening
):
    # The first demo's pages hold the web port (8090 by default) even when a second demo has
    # a folder and a homeserver port of its own.
    monkeypatch.setattr(demo, "ensure_synapse_installed", lambda: None)
    args = ["demo", "--dir", str(tmp_path), "--port", str(free_loopback_port())]
    code = main([*args, "--web-port", str(listening)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"port {listening} (the public pages) is in use" in err and "--web-port M" in err
    assert "Traceback" not in err and not (tmp_path / "synapse").exists()


async def test_public_pages_on_a_port_in_use_end_in_a_sentence_not_a_traceback(tmp_path, listening):
    async with BotHarness.create(tmp_path) as h:
        with pytest.raises(WebListenError, match=rf"127.0.0.1:{listening}: .*\[web\] listen"):
            await start_server(h.bot.site, "127.0.0.1", listening)


def test_a_lock_left_by_a_stopped_bot_does_not_count(tmp_path):
    stopped = DataDirLock(tmp_path)
    stopped.acquire()
    stopped.release()  # the file stays, with its pid; the kernel's lock is gone
    DataDirLock(tmp_path).acquire_and_release()
    with DataDirLock(tmp_path):  # and a real start still takes it
        pass


def test_a_demo_folder_that_cannot_be_made_is_said_in_a_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "ensure_synapse_installed", lambda: None)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["demo", "--dir", str(blocker / "demo"), "--port", str(free_loopback_port())]) == 1
    err = capsys.readouterr().err
    assert f"cannot keep the demo in {blocker / 'demo'}: Not a directory" in err
    assert "--dir DIR" in err and "Traceback" not in err


def test_a_demo_still_starting_holds_its_folder_against_a_second(tmp_path, capsys, monkeypatch):
    # The first demo holds its folder from the first moment, before its bot takes the bot's
    # own lock: a second one started meanwhile, even with ports of its own, starts nothing.
    monkeypatch.setattr(demo, "ensure_synapse_installed", lambda: None)
    first = DataDirLock(tmp_path)  # what a first demo holds while its homeserver starts
    first.acquire()
    try:
        code = main(["demo", "--dir", str(tmp_path), "--port", str(free_loopback_port())])
    finally:
        first.release()
    err = capsys.readouterr().err
    assert code == 1 and f"another civicbot is running on {tmp_path}" in err
    assert not (tmp_path / "synapse").exists() and "Traceback" not in err


def test_a_lock_that_cannot_be_written_is_an_unusable_folder_and_holds_nothing(
    tmp_path, monkeypatch
):
    import os

    from civicbot.storage.data_lock import DataDirUnusable

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(DataDirUnusable, match="No space left on device"):
        DataDirLock(tmp_path).acquire()
    monkeypatch.undo()
    with DataDirLock(tmp_path):  # the failed attempt left no lock behind
        pass
