"""Streams specifics: retention, wildcard discovery speed, fan-out group cleanup, bounded publish
retries, attempts from the delivery count."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from amb_core import MessageBus
from amb_core.deadletter import RetryPolicy
from amb_core.message import Message
from amb_core.testing.conformance import wait_until
from amb_core.testing.servers import ServerProcess
from amb_redis import RedisPublishError, RedisTransport

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


async def test_maxlen_bounds_each_stream(redis_url: str, namespace: str) -> None:
    async with MessageBus(RedisTransport(redis_url, namespace=namespace, maxlen=50)) as bus:
        for i in range(1000):
            await bus.publish("ret.capped", i)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        length = await raw.xlen(f"{namespace}:ret.capped")
    finally:
        await raw.aclose()
    assert 50 <= length <= 250, "MAXLEN ~ trims whole nodes, so roughly, never below the cap"


async def test_wildcard_finds_a_new_stream_within_discover(redis_url: str, namespace: str) -> None:
    async with MessageBus(RedisTransport(redis_url, namespace=namespace, discover=0.5)) as bus:
        got: list[tuple[float, Message]] = []
        await bus.subscribe("disc.>", lambda m: got.append((time.monotonic(), m)))
        await anyio.sleep(0.2)
        sent = time.monotonic()
        await bus.publish("disc.brand.new", "hello")
        await wait_until(lambda: len(got) == 1, 10, "the message on a stream made later")
        assert got[0][1].payload == "hello"
        assert got[0][0] - sent < 0.5 + 1.0 + 0.3, "found within discover (+ one block)"


async def test_fanout_group_is_removed_on_close(redis_url: str, namespace: str) -> None:
    key = f"{namespace}:fan.clean"
    raw = aioredis.Redis.from_url(redis_url)
    try:
        async with MessageBus(RedisTransport(redis_url, namespace=namespace)) as bus:
            sub = await bus.subscribe("fan.clean", print)
            await bus.subscribe("fan.clean", print, group="stays")
            await bus.publish("fan.clean", 1)
            names = {g["name"] for g in await raw.xinfo_groups(key)}
            assert b"stays" in names and any(n.startswith(b"fan.") for n in names)
            await sub.cancel()
            assert {g["name"] for g in await raw.xinfo_groups(key)} == {b"stays"}
        groups = await raw.xinfo_groups(key)
        assert groups[0]["consumers"] == 0, "a consumer that closed cleanly leaves the group"
    finally:
        await raw.aclose()


async def test_attempt_is_the_delivery_count(redis_url: str, namespace: str) -> None:
    retry = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.02, jitter=0)
    async with MessageBus(RedisTransport(redis_url, namespace=namespace), retry=retry) as bus:
        attempts: list[int] = []

        async def flaky(message: Message) -> None:
            attempts.append(message.attempt)
            if message.attempt < 4:
                raise RuntimeError("again")

        await bus.subscribe("att.x", flaky, group="g")
        await bus.publish("att.x", 1)
        await wait_until(lambda: len(attempts) == 4, 10, "four attempts")
        raw = aioredis.Redis.from_url(redis_url)
        try:
            info = await raw.xpending(f"{namespace}:att.x", "g")
        finally:
            await raw.aclose()
        assert attempts == [1, 2, 3, 4]
        assert info["pending"] <= 1  # acked at the next read at the latest


async def test_publish_fails_typed_when_redis_stays_down(redis_server: ServerProcess) -> None:
    transport = RedisTransport(f"redis://127.0.0.1:{redis_server.port}", publish_timeout=0.5)
    async with MessageBus(transport) as bus:
        await bus.publish("down.x", 1)
        await anyio.to_thread.run_sync(redis_server.kill)
        started = time.monotonic()
        with pytest.raises(RedisPublishError):
            await bus.publish("down.x", 2)
        assert time.monotonic() - started < 3, "bounded by publish_timeout"


async def test_pending_survives_in_the_group_for_a_later_member(
    redis_url: str, namespace: str
) -> None:
    """Nothing acknowledged is redelivered; nothing unacknowledged is lost across members."""
    async with MessageBus(RedisTransport(redis_url, namespace=namespace)) as bus:
        first: list[Any] = []
        sub = await bus.subscribe("keep.x", first.append, group="g")
        for i in range(20):
            await bus.publish("keep.x", i)
        await wait_until(lambda: len(first) == 20, 10, "the first twenty")
        await sub.cancel()
        for i in range(20, 30):
            await bus.publish("keep.x", i)
        second: list[Message] = []
        await bus.subscribe("keep.x", second.append, group="g", ack_wait=0.5)
        await wait_until(lambda: len(second) == 10, 10, "the ten published while away")
        await anyio.sleep(1.0)
        assert sorted(m.payload for m in second) == list(range(20, 30))


async def test_pubsub_group_is_fan_out_with_a_warning(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    transport = RedisTransport(redis_url, namespace=namespace, mode="pubsub")
    async with MessageBus(transport) as bus:
        one: list[Any] = []
        two: list[Any] = []
        await bus.subscribe("ps.g", one.append, group="g")
        await bus.subscribe("ps.g", two.append, group="g")
        await bus.publish("ps.g", 1)
        await wait_until(lambda: len(one) == len(two) == 1, 5, "both members")
    assert "no consumer groups" in caplog.text


async def test_start_earliest_on_a_wildcard_reads_existing_streams(
    redis_url: str, namespace: str
) -> None:
    async with MessageBus(RedisTransport(redis_url, namespace=namespace)) as bus:
        for topic in ("old.a", "old.b.c"):
            await bus.publish(topic, topic)
        got: list[Message] = []
        await bus.subscribe("old.>", got.append, start="earliest")
        await wait_until(lambda: len(got) == 2, 5, "the retained messages")
        assert sorted(m.payload for m in got) == ["old.a", "old.b.c"]


@pytest.mark.parametrize("mode", ["pubsub", "streams"])
async def test_requests_share_one_inbox_and_few_connections(
    redis_server: ServerProcess, mode: str
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}?mode={mode}"
    async with MessageBus(RedisTransport(url)) as server, MessageBus(RedisTransport(url)) as client:
        await server.subscribe("svc.echo", lambda m: m.payload, concurrency=20)
        await server.publish("svc.warmup", None)

        async def ask(i: int) -> None:
            assert (await client.request("svc.echo", i, timeout=10)).payload == i

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(ask, i)
        raw = aioredis.Redis(port=redis_server.port)
        try:
            inbox = f"amb:_INBOX.{client.id}"
            assert await raw.pubsub_numsub(inbox) == [(inbox.encode(), 1)]
            clients = (await raw.info("clients"))["connected_clients"]
        finally:
            await raw.aclose()
        assert clients <= 12, f"{clients} connections for 200 concurrent requests"


async def test_silent_empty_consumers_are_swept(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amb_redis import streams

    monkeypatch.setattr(streams, "SWEEP_EVERY", 0.0)
    monkeypatch.setattr(streams, "GHOST_IDLE_MS", 200)
    key = f"{namespace}:sweep.x"
    raw = aioredis.Redis.from_url(redis_url)
    try:
        await raw.xgroup_create(key, "g", id="$", mkstream=True)
        await raw.xadd(key, {"body": b"1"})
        await raw.xreadgroup("g", "ghost-busy", {key: ">"})  # holds one pending entry
        await raw.xgroup_createconsumer(key, "g", "ghost-empty")
        await anyio.sleep(0.3)
        async with MessageBus(RedisTransport(redis_url, namespace=namespace)) as bus:
            await bus.subscribe("sweep.x", print, group="g", ack_wait=60)

            async def names() -> set[bytes]:
                return {c["name"] for c in await raw.xinfo_consumers(key, "g")}

            deadline = anyio.current_time() + 5
            while b"ghost-empty" in await names():
                assert anyio.current_time() < deadline, "the empty ghost was not swept"
                await anyio.sleep(0.1)
            assert b"ghost-busy" in await names(), "a consumer holding entries stays"
    finally:
        await raw.aclose()
