"""``wait_replicas`` on a single Redis: WAIT after the XADD, on the connection that wrote it."""

from __future__ import annotations

import time

import anyio
import pytest

from amb_core import MessageBus
from amb_core.testing.servers import ServerProcess
from amb_redis import RedisPublishError, RedisTransport

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


async def test_a_redis_without_replicas_refuses_a_publish_that_waits_for_one(
    redis_server: ServerProcess,
) -> None:
    """No replica can acknowledge: the publish fails typed after ``wait_timeout`` (the entry is
    stored; WAIT does not undo a write), and one without WAIT still works."""
    url = f"redis://127.0.0.1:{redis_server.port}"
    async with MessageBus(RedisTransport(url, wait_replicas=1, wait_timeout=0.3)) as bus:
        began = time.monotonic()
        with anyio.fail_after(10), pytest.raises(RedisPublishError, match="0 of 1 replicas"):
            await bus.publish("wait.single", 1)
        assert 0.25 <= time.monotonic() - began < 5
    async with MessageBus(RedisTransport(url)) as bus:
        await bus.publish("wait.single", 2)
