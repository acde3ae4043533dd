"""A caller cancelled while the transport waits for a task of its own it has just cancelled sees its
cancellation (issue 14, defect 8): ``except BaseException: pass`` around ``await task`` took the
caller's ``CancelledError`` for the task's and went on."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from amb_core.aio import cancel_and_wait
from amb_nats import NATSTransport
from amb_nats.errors import NATSConnectError

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(256)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


async def test_a_connect_cancelled_by_its_caller_ends_cancelled(silent_server: int) -> None:
    """connect() gives up on the silent server after ``connect_timeout`` and cancels nats-py's own
    connect task; callers are cancelled around that moment, some while connect() waits for that
    task to end. Each cancelled one must raise CancelledError, never NATSConnectError."""
    url = f"nats://127.0.0.1:{silent_server}"
    outcomes = {"cancelled": 0, "timed out first": 0}
    for trial in range(60):
        transport = NATSTransport.from_url(url, connect_timeout=0.05)
        task = asyncio.ensure_future(transport.connect())
        # Most land around the moment connect() gives up; every tenth well before it.
        await asyncio.sleep(0.01 if trial % 10 == 0 else 0.05 + (trial % 20) * 0.0002)
        if not task.cancel():  # it had already failed, before the cancellation
            with pytest.raises(NATSConnectError):
                await task
            outcomes["timed out first"] += 1
            continue
        with pytest.raises(asyncio.CancelledError):
            await task
        outcomes["cancelled"] += 1
    assert outcomes["cancelled"] > 0, outcomes


async def test_cancel_and_wait_leaves_the_callers_cancellation_alone() -> None:
    """The task takes a while to end once cancelled; the caller is cancelled meanwhile."""
    stopping = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            stopping.set()
            await asyncio.shield(asyncio.sleep(0.2))

    inner = asyncio.ensure_future(slow_to_stop())
    await asyncio.sleep(0)
    caller = asyncio.ensure_future(cancel_and_wait(inner, "the slow task"))
    await asyncio.wait_for(stopping.wait(), 5)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()
    await asyncio.wait({inner})
    assert inner.done()
