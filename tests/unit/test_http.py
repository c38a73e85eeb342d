"""Calls to the homeserver (civicbot.transport.http): a call that takes long is said in the log."""

from __future__ import annotations

import asyncio
import logging

from civicbot.transport import http


class _Answer:
    status_code = None
    transport_response = None


class _Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.first = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.first.set()


async def test_a_call_the_homeserver_leaves_unanswered_is_logged_while_it_waits(monkeypatch):
    monkeypatch.setattr(http, "SLOW_CALL_S", 0.05)
    said = _Said()
    logging.getLogger("civicbot.transport.matrix").addHandler(said)
    answered = asyncio.Event()

    async def join() -> _Answer:
        await answered.wait()
        return _Answer()

    try:
        api = http.HomeserverApi(client=None)  # type: ignore[arg-type]
        call = asyncio.create_task(api.retry("join !room:example.org", join))
        await asyncio.wait_for(said.first.wait(), 10)
        assert said.lines[0].startswith("join !room:example.org: no answer from the homeserver")
        assert not call.done()
        answered.set()
        assert isinstance(await call, _Answer)
        assert said.lines[-1].startswith("join !room:example.org: the homeserver answered after")
    finally:
        logging.getLogger("civicbot.transport.matrix").removeHandler(said)


async def test_a_quick_call_logs_nothing(caplog):
    async def ping() -> _Answer:
        return _Answer()

    caplog.set_level(logging.WARNING, "civicbot.transport.matrix")
    api = http.HomeserverApi(client=None)  # type: ignore[arg-type]
    assert isinstance(await api.retry("ping", ping), _Answer)
    await asyncio.sleep(0)
    assert caplog.records == []
