"""Closing never swallows the caller's own cancellation (a timeout or cancel scope around
``aclose()``): the transport stops its background tasks, but a CancelledError aimed at the caller
while it waits for them reaches the caller. Against a real Redis, with the tasks the transport runs:
the pub/sub reader and the pipeline's drain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from amb_core.errors import PublishError
from amb_core.transport import SubscriptionSpec
from amb_redis import RedisTransport
from amb_redis._tasks import cancel_and_wait

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


async def _cancel_while_it_waits(closing: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run ``closing`` up to its first wait (for the task it cancelled), then cancel it."""
    task = asyncio.get_running_loop().create_task(closing)
    await asyncio.sleep(0)  # one step: it cancelled its background task and waits for it
    assert not task.done()
    task.cancel()
    await asyncio.wait([task], timeout=10)
    return task


async def test_closing_pubsub_lets_the_callers_cancellation_through(
    redis_url: str, namespace: str
) -> None:
    transport = RedisTransport(redis_url, mode="pubsub", namespace=namespace)
    await transport.connect()
    try:
        await transport.subscribe(SubscriptionSpec("cancel.me"))
        assert transport._hub is not None and transport._hub.task is not None
        reader = transport._hub.task
        closing = await _cancel_while_it_waits(transport.aclose())
        assert closing.cancelled(), "the caller's cancellation was swallowed"
        await asyncio.wait([reader], timeout=10)
        assert reader.cancelled(), "the reader stopped all the same (told before any wait)"
        await transport.aclose()  # finishes what the cancelled call left
        assert transport._hub is None and transport.client is None
    finally:
        await transport.aclose()


async def test_closing_the_pipeline_lets_the_callers_cancellation_through(
    redis_url: str, namespace: str
) -> None:
    transport = RedisTransport(redis_url, namespace=namespace)
    await transport.connect()
    try:
        pipeliner = transport._pipeliner
        loop = asyncio.get_running_loop()
        calls = [loop.create_task(pipeliner.call("PING")) for _ in range(200)]
        for _ in range(10_000):  # until the calls that queued behind the first are draining
            if pipeliner._task is not None:
                break
            await asyncio.sleep(0)
        assert pipeliner._task is not None, "no drain task to cancel"
        closing = await _cancel_while_it_waits(pipeliner.aclose())
        assert closing.cancelled(), "the caller's cancellation was swallowed"
        done, pending = await asyncio.wait(calls, timeout=10)
        assert not pending, "every call ended"
        for call in done:  # answered, or failed typed; none left waiting
            error = call.exception()
            assert (error is None and call.result() is True) or isinstance(error, PublishError)
    finally:
        await transport.aclose()


async def test_a_task_that_fails_while_closing_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup broke") from None

    task = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="amb.redis"):
        await cancel_and_wait(task, "the stubborn task")
    assert "the stubborn task ended with an error while closing" in caplog.text
    assert "cleanup broke" in caplog.text


async def test_a_task_that_swallows_its_cancellation_is_cancelled_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Closing never hangs on a task that ate one cancellation (as Python 3.11's wait_for can)."""
    swallowed: list[bool] = []

    async def swallows_once() -> None:
        while True:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)

    task = asyncio.get_running_loop().create_task(swallows_once())
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="amb.redis"):
        await asyncio.wait_for(cancel_and_wait(task, "the deaf task", grace=0.2), 5)
    assert task.cancelled() and swallowed == [True]
    assert "the deaf task was still running 0.2s after its cancellation" in caplog.text
