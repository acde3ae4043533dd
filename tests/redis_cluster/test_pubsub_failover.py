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


async def publish_until(bus: MessageBus, stop: anyio.Event, published: dict[int, float]) -> None:
    """Publish 0, 1, 2, ... to TOPIC every 5 ms until ``stop``, noting when each went out."""
    n = 0
    while not stop.is_set():
        published[n] = time.monotonic()
        await bus.publish(TOPIC, n)
        n += 1
        await anyio.sleep(0.005)


async def test_a_sharded_subscription_follows_its_slot_to_the_new_master(
    own_cluster: Cluster,
) -> None:
    url = f"{own_cluster.url()}?mode=pubsub&publish_timeout=20"
    published: dict[int, float] = {}
    received: dict[int, float] = {}
    stop = anyio.Event()

    async def handle(message: Message) -> None:
        received.setdefault(message.payload, time.monotonic())

    async with (
        MessageBus(RedisTransport(url), name="pub") as publisher,
        MessageBus(RedisTransport(url), name="sub") as subscriber,
        anyio.create_task_group() as tg,
    ):
        await subscriber.subscribe(TOPIC, handle)
        tg.start_soon(publish_until, publisher, stop, published)
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


async def test_classic_subscriptions_move_to_a_live_node_when_theirs_dies(
    own_cluster: Cluster,
) -> None:
    """``pubsub=classic`` (wildcards on a cluster): every node hears every PUBLISH, so when the
    node holding the subscriptions dies they move to another live node by themselves; an exact
    and a wildcard subscription both receive again, and the publisher rides through."""
    url = f"{own_cluster.url()}?mode=pubsub&pubsub=classic&publish_timeout=20"
    published: dict[int, float] = {}
    exact: dict[int, float] = {}
    wildcard: dict[int, float] = {}
    stop = anyio.Event()

    async with (
        MessageBus(RedisTransport(url), name="pub") as publisher,
        MessageBus(RedisTransport(url), name="sub") as subscriber,
        anyio.create_task_group() as tg,
    ):
        await subscriber.subscribe(TOPIC, lambda m: exact.setdefault(m.payload, time.monotonic()))
        await subscriber.subscribe(
            "pubsub.*", lambda m: wildcard.setdefault(m.payload, time.monotonic())
        )
        tg.start_soon(publish_until, publisher, stop, published)
        await wait_until(lambda: len(exact) >= 100 and len(wildcard) >= 100, 30, "the first")
        transport = subscriber.transport
        assert isinstance(transport, RedisTransport)
        hubs = transport._hub.hubs  # type: ignore[union-attr]
        assert len(hubs) == 1, "classic subscriptions live on one node"
        port = int(next(iter(hubs)).rsplit(":", 1)[1])
        victim = next(node for node in own_cluster.nodes if node.port == port)
        killed = time.monotonic()
        victim.kill()

        def after(received: dict[int, float]) -> bool:
            return any(n in received for n, t in list(published.items()) if t >= killed + 0.5)

        await wait_until(
            lambda: after(exact) and after(wildcard),
            30,
            lambda: f"messages published after the kill ({len(exact)}, {len(wildcard)} received)",
        )
        late = [t for n, t in exact.items() if published[n] >= killed + 0.5]
        stop.set()
        await anyio.sleep(0.5)
        assert hubs and all(not name.endswith(f":{port}") for name in hubs), "moved"
    print(
        f"\nRedis Cluster classic pub/sub, the subscriptions' node killed: receiving again "
        f"{min(late) - killed:.2f}s after the kill; {len(published)} published, "
        f"{len(published) - len(exact)} not received (at most once)"
    )
