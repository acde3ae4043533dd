"""Sharded pub/sub through a master's failover: the subscription moves to the promoted replica by
itself and receives again; the publisher rides through. Messages published while no master served
the slot are lost (pub/sub is at most once): counted and printed, not asserted."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import pytest

from amb_core import Message, MessageBus
from amb_core.testing.conformance import wait_until
from amb_redis import RedisTransport

from .cluster import RedisCluster as Cluster
from .cluster import start_redis_cluster
from .test_failover import master_of

pytestmark = [pytest.mark.redis, pytest.mark.cluster, pytest.mark.anyio, pytest.mark.slow]

TOPIC = "pubsub.failover"


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    cluster = start_redis_cluster()
    try:
        yield cluster
    finally:
        cluster.close()


async def test_a_sharded_subscription_follows_its_slot_to_the_new_master(
    own_cluster: Cluster,
) -> None:
    url = f"{own_cluster.url()}?mode=pubsub&publish_timeout=20"
    published: dict[int, float] = {}
    received: dict[int, float] = {}
    stop = anyio.Event()

    async def handle(message: Message) -> None:
        received.setdefault(message.payload, time.monotonic())

    async def publish_all(bus: MessageBus) -> None:
        n = 0
        while not stop.is_set():
            published[n] = time.monotonic()
            await bus.publish(TOPIC, n)
            n += 1
            await anyio.sleep(0.005)

    async with (
        MessageBus(RedisTransport(url), name="pub") as publisher,
        MessageBus(RedisTransport(url), name="sub") as subscriber,
        anyio.create_task_group() as tg,
    ):
        await subscriber.subscribe(TOPIC, handle)
        tg.start_soon(publish_all, publisher)
        await wait_until(lambda: len(received) >= 100, 30, "the first messages")
        transport = publisher.transport
        assert isinstance(transport, RedisTransport)
        victim = master_of(own_cluster, transport.config.key(TOPIC))
        killed = time.monotonic()
        victim.kill()

        def after() -> list[int]:
            return [n for n, t in list(published.items()) if t >= killed + 0.5]

        await wait_until(
            lambda: any(n in received for n in after()),
            30,
            lambda: f"a message published after the kill to arrive ({len(received)} received)",
        )
        first = min(received[n] for n in after() if n in received)
        stop.set()
        await anyio.sleep(0.5)  # the last ones arrive
    lost = len(published) - len(received)
    print(
        f"\nRedis Cluster sharded pub/sub failover: receiving again {first - killed:.2f}s after "
        f"the kill; {len(published)} published, {lost} not received (at most once)"
    )
    assert master_of(own_cluster, transport.config.key(TOPIC)) is not victim
