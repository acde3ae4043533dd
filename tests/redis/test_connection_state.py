"""Connection state through a Redis crash (kill -9) and restart, in both modes: ``RECONNECTING``
while Redis is down (also for a transport that neither publishes nor reads: the heartbeat), and
``CONNECTED`` once it is back; a publish during the outage raises a typed error within
``publish_timeout``, or returns when Redis comes back in time."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from amb_core import MessageBus
from amb_core.errors import BrokerUnavailableError
from amb_core.message import Message
from amb_core.testing.conformance import wait_until
from amb_core.testing.servers import ServerProcess
from amb_core.transport import ConnectionState
from amb_redis import RedisPublishError, RedisTransport, RedisUnavailableError

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

HEARTBEAT = 0.2


def _transport(server: ServerProcess, mode: str, **options: Any) -> RedisTransport:
    url = f"redis://127.0.0.1:{server.port}"
    return RedisTransport(url, mode=mode, heartbeat=HEARTBEAT, **options)


@pytest.mark.parametrize("mode", ["streams", "pubsub"])
async def test_state_follows_a_crash_and_a_restart(redis_server: ServerProcess, mode: str) -> None:
    async with (
        MessageBus(_transport(redis_server, mode, publish_timeout=1.0)) as busy,
        MessageBus(_transport(redis_server, mode)) as idle,  # never publishes, never reads
    ):
        got: list[Message] = []
        await busy.subscribe("state.x", got.append)
        assert busy.state is idle.state is ConnectionState.CONNECTED
        await anyio.to_thread.run_sync(redis_server.kill)
        killed = time.monotonic()
        await wait_until(
            lambda: busy.state is idle.state is ConnectionState.RECONNECTING,
            5,
            lambda: f"both reconnecting ({busy.state}, {idle.state})",
        )
        assert time.monotonic() - killed < HEARTBEAT + 1.0, "noticed within about a heartbeat"

        started = time.monotonic()
        with pytest.raises(RedisUnavailableError) as caught:
            await busy.publish("state.x", "lost")
        took = time.monotonic() - started
        assert isinstance(caught.value, BrokerUnavailableError)
        assert isinstance(caught.value, RedisPublishError), "still a RedisPublishError"
        assert 0.8 < took < 1.5, f"given up after publish_timeout=1s, not {took:.2f}s"

        await anyio.to_thread.run_sync(redis_server.start)
        await wait_until(
            lambda: busy.state is idle.state is ConnectionState.CONNECTED,
            5,
            lambda: f"both connected ({busy.state}, {idle.state})",
        )

        async def delivered() -> bool:  # pub/sub: at most once, so probe until one arrives
            await busy.publish("state.x", "after")
            await anyio.sleep(0.1)
            return any(m.payload == "after" for m in got)

        deadline = time.monotonic() + 10
        while not await delivered():
            assert time.monotonic() < deadline, "the subscription did not come back"
    assert busy.state is idle.state is ConnectionState.CLOSED


@pytest.mark.parametrize("mode", ["streams", "pubsub"])
async def test_publish_waits_out_a_short_outage(redis_server: ServerProcess, mode: str) -> None:
    """Redis back within ``publish_timeout``: the publish made during the outage returns."""
    async with MessageBus(_transport(redis_server, mode, publish_timeout=10.0)) as bus:
        await bus.publish("short.x", 0)
        await anyio.to_thread.run_sync(redis_server.kill)
        await wait_until(lambda: bus.state is ConnectionState.RECONNECTING, 5, "reconnecting")
        returned: list[float] = []

        async def publish() -> None:
            started = time.monotonic()
            await bus.publish("short.x", 1)
            returned.append(time.monotonic() - started)

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish)
            await anyio.sleep(0.5)  # the outage the publish must wait out
            assert returned == [], "it waits while Redis is down"
            await anyio.to_thread.run_sync(redis_server.start)
        assert returned and returned[0] < 10, returned
        await wait_until(lambda: bus.state is ConnectionState.CONNECTED, 5, "connected")


@pytest.mark.parametrize("mode", ["streams", "pubsub"])
async def test_concurrent_publishes_during_an_outage_all_end_within_the_bound(
    redis_server: ServerProcess, mode: str
) -> None:
    """Publishes queued behind one another (they share pipelines) each keep their own deadline:
    none waits for the one before it to give up first."""
    async with MessageBus(_transport(redis_server, mode, publish_timeout=1.0, batch=10)) as bus:
        await bus.publish("many.x", 0)
        await anyio.to_thread.run_sync(redis_server.kill)
        outcomes: list[tuple[float, BaseException | None]] = []

        async def publish(i: int) -> None:
            started = time.monotonic()
            try:
                await bus.publish("many.x", i)
            except Exception as exc:
                outcomes.append((time.monotonic() - started, exc))
            else:
                outcomes.append((time.monotonic() - started, None))

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(publish, i)
        assert len(outcomes) == 50
        assert all(isinstance(e, RedisUnavailableError) for _, e in outcomes), outcomes[:3]
        slowest = max(t for t, _ in outcomes)
        assert slowest < 1.5, f"the slowest gave up after {slowest:.2f}s; publish_timeout is 1s"
