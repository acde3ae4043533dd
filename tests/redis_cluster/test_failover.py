"""Killing a Redis Cluster master under load in Streams mode (issue 19): the replica takes over,
the buses carry on by themselves, and what was lost is counted and printed.

A cluster of this test alone (three masters, a replica each, ``cluster-node-timeout`` 1 s, no
persistence: the replica is the copy). Thirty-two publisher tasks on one bus publish numbered
messages to one topic; two buses in one consumer group handle them. After a warm-up the master of
the topic's slot is SIGKILLed; once its replica is the master, the killed node is started again (it
rejoins as the new master's replica, as an operator's restart would); publishing goes on for
``AFTER_KILL`` seconds, then stops, and the test waits until the handlers have taken whatever is
left. Measured from the kill:

- *promoted*: until the cluster names the replica master of the slot;
- *publish*: until the first publish begun after the kill returned (the new master stored it);
- *consume*: until the first message published after the kill was handled;
- *lost*: messages whose publish returned (acknowledged by a master) but that were never handled.

Redis replicates asynchronously, so without ``wait_replicas`` the entries the dead master
acknowledged but had not yet sent to its replica are gone: the test prints how many and does not
fail on them. With ``wait_replicas=1`` a publish returns only once the replica has the entry, and
the test asserts that nothing acknowledged was lost. The *replica-lagging* cases stop the replica
(SIGSTOP) for ``LAG`` seconds before the kill and resume it right after, as a replica that fell
behind (slow disk, long pause, congested link) would be, while the workers are held too, so that a
backlog of entries sits in the stream at the kill (entries a worker already took are handled
whatever happens to the stream): that is where asynchronous replication loses acknowledged writes,
and where WAIT holds the publishes back instead. With WAIT, until the restarted node is the new
master's replica, the new master has no replica and its publishes fail (typed, not acknowledged),
which is what ``wait_replicas=1`` asks for. ``test_wait_cost`` measures the publish rate with and
without WAIT on a healthy cluster. ``nox -s cluster`` prints the figures (``-s``); docs/scaling.md
has those of a run.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from amb_core import Message, MessageBus
from amb_core.errors import TransportError
from amb_core.testing.conformance import wait_until
from amb_redis import RedisTransport
from amb_redis.config import RedisConfig

from .cluster import RedisCluster as Cluster
from .cluster import start_redis_cluster

pytestmark = [pytest.mark.redis, pytest.mark.cluster, pytest.mark.anyio, pytest.mark.slow]

TOPIC = "failover.work"
GROUP = "workers"
PUBLISHERS = 32
LAG = 0.8  # seconds the replica is stopped before the kill, in the replica-lagging case
PAD = 4000  # bytes per message in that case: more than the kernel's socket buffers hold in LAG
AFTER_KILL = 5.0  # seconds of publishing after the kill
PUBLISH_TIMEOUT = 20.0  # longer than a failover (node timeout 1 s + election), see docs/scaling.md


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    cluster = start_redis_cluster()
    try:
        yield cluster
    finally:
        cluster.close()


def master_of(cluster: Cluster, key: str) -> Any:
    """The fixture's node that is the master of ``key``'s slot now."""
    config = RedisConfig.parse(cluster.url())
    client = RedisCluster.from_url(
        config.url, startup_nodes=[ClusterNode(h, p) for h, p in config.seeds[1:]]
    )
    try:
        port = client.get_node_from_key(key).port
    finally:
        client.close()
    return next(node for node in cluster.nodes if node.port == port)


def replica_of(cluster: Cluster, master: Any) -> Any:
    """The fixture's node that replicates ``master``."""
    for node in cluster.live():
        client = redis.Redis(port=node.port, decode_responses=True)
        try:
            info = client.info("replication")
        finally:
            client.close()
        if info.get("role") == "slave" and int(info.get("master_port", 0)) == master.port:
            return node
    raise AssertionError(f"no replica of node {master.port}")


@pytest.mark.parametrize("lagging", [False, True], ids=["replica-current", "replica-lagging"])
@pytest.mark.parametrize("wait_replicas", [0, 1])
async def test_killing_a_master_under_load(
    own_cluster: Cluster, wait_replicas: int, lagging: bool
) -> None:
    cluster = own_cluster
    url = f"{cluster.url()}?publish_timeout={PUBLISH_TIMEOUT}&wait_replicas={wait_replicas}"
    url += "&wait_timeout=2"
    started: dict[int, float] = {}  # message -> when its publish began
    acked: dict[int, float] = {}  # message -> when its publish returned
    refused: list[tuple[int, float, str]] = []  # publishes that raised
    handled: dict[int, float] = {}  # message -> when first handled
    handled_times = 0
    counter = iter(range(10**9))
    pad = "x" * (PAD if lagging else 0)
    stop = anyio.Event()

    gate = [anyio.Event()]  # handlers wait on gate[0] while the workers are "busy"
    gate[0].set()

    async def handle(message: Message) -> None:
        nonlocal handled_times
        await gate[0].wait()
        handled_times += 1
        handled.setdefault(message.payload["n"], time.monotonic())

    running = [0]  # publisher tasks not yet finished

    async def publish_all(bus: MessageBus) -> None:
        running[0] += 1
        try:
            await publish_loop(bus)
        finally:
            running[0] -= 1

    async def publish_loop(bus: MessageBus) -> None:
        while not stop.is_set():
            n = next(counter)
            started[n] = time.monotonic()
            try:
                await bus.publish(TOPIC, {"n": n, "pad": pad})
                acked[n] = time.monotonic()
            except TransportError as exc:
                refused.append((n, time.monotonic(), f"{type(exc).__name__}: {exc}"))
            await anyio.lowlevel.checkpoint()

    publisher = MessageBus(RedisTransport(url), name="publisher")
    members = [MessageBus(RedisTransport(url), name=f"member{i}") for i in (1, 2)]
    async with publisher, members[0], members[1], anyio.create_task_group() as tg:
        for member in members:
            await member.subscribe(TOPIC, handle, group=GROUP, ack_wait=2.0)
        for _ in range(PUBLISHERS):
            tg.start_soon(publish_all, publisher)
        await wait_until(lambda: len(handled) >= 2000, 30, "the first messages")
        transport = publisher.transport
        assert isinstance(transport, RedisTransport)
        victim = master_of(cluster, transport.config.key(TOPIC))
        warm = (len(acked), time.monotonic())
        await anyio.sleep(1.0)
        rate = (len(acked) - warm[0]) / (time.monotonic() - warm[1])
        replica = replica_of(cluster, victim)
        if lagging:  # the replica falls behind (a slow disk, a long GC, a congested link)
            gate[0] = anyio.Event()  # and the workers too: a backlog builds up in the stream
            os.kill(replica.proc.pid, signal.SIGSTOP)
            await anyio.sleep(LAG)
        killed = time.monotonic()
        victim.kill()
        if lagging:
            os.kill(replica.proc.pid, signal.SIGCONT)
            gate[0].set()
        key = transport.config.key(TOPIC)
        await wait_until(
            lambda: master_of(cluster, key) is not victim, 30, "the replica to take over"
        )
        promoted = time.monotonic() - killed
        await anyio.to_thread.run_sync(victim.start)  # it rejoins as the new master's replica
        await anyio.sleep(max(0.0, killed + AFTER_KILL - time.monotonic()))

        def after() -> list[int]:
            return [n for n, t in list(started.items()) if t >= killed]

        await wait_until(
            lambda: any(n in acked for n in after()),
            30,
            lambda: f"a publish after the kill to return: raised {refused[-1:]}",
        )
        await wait_until(
            lambda: any(n in handled for n in after()),
            30,
            lambda: f"a message published after the kill to be handled ({len(handled)} handled)",
        )
        stop.set()  # and the publishes in flight finish: their messages count too
        await wait_until(lambda: running[0] == 0, 30, "the publishers to finish")
        # Until every acknowledged message is handled, or nothing more arrives for 5 s.
        last, quiet_since = -1, time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not set(acked) <= set(handled):
            if len(handled) != last:
                last, quiet_since = len(handled), time.monotonic()
            elif time.monotonic() - quiet_since > 5:
                break
            await anyio.sleep(0.1)
        first_ack = min(acked[n] for n in after() if n in acked)
        first_handled = min(handled[n] for n in after() if n in handled)
        new_master = master_of(cluster, key)

    lost = sorted(set(acked) - set(handled))
    print(
        f"\nRedis Cluster failover, wait_replicas={wait_replicas}, replica "
        f"{'lagging' if lagging else 'current'}: {len(acked)} publishes "
        f"acknowledged ({rate:.0f}/s before the kill), {len(refused)} raised; replica promoted "
        f"after {promoted:.2f}s; publish resumed {first_ack - killed:.2f}s and consume "
        f"{first_handled - killed:.2f}s after the kill; handled {len(handled)}, "
        f"{handled_times - len(handled)} deliveries again; LOST (acknowledged, never handled): "
        f"{len(lost)} {lost[:10]}"
    )
    for n, _, why in refused[:3]:
        print(f"  raised: message {n}: {why}")
    assert new_master is not victim and new_master.proc is not None
    assert cluster.role(victim) == "slave", "the killed node came back as the replica"
    if wait_replicas:
        assert not lost, "with WAIT, every acknowledged message was handled"


async def publish_rate(url: str, count: int = 5000, in_flight: int = 50) -> float:
    """Messages per second that one bus publishes with ``in_flight`` publishes outstanding."""
    async with MessageBus(RedisTransport(url), name="rate") as bus:
        await bus.publish("cost.t", 0)  # registers the topic, opens the connections

        async def burst(first: int) -> None:
            for n in range(first, count, in_flight):
                await bus.publish("cost.t", n)

        began = time.monotonic()
        async with anyio.create_task_group() as tg:
            for first in range(in_flight):
                tg.start_soon(burst, first)
        return count / (time.monotonic() - began)


async def test_wait_cost(own_cluster: Cluster) -> None:
    """Publish rate on a healthy cluster with and without WAIT: one publish at a time (each pays
    WAIT's round trip to the replica) and 50 in flight (one WAIT per pipeline of them)."""
    for in_flight in (1, 50):
        without = await publish_rate(own_cluster.url(), 3000, in_flight)
        with_wait = await publish_rate(f"{own_cluster.url()}?wait_replicas=1", 3000, in_flight)
        print(
            f"\nRedis Cluster publish rate, {in_flight} in flight: {without:.0f}/s without WAIT, "
            f"{with_wait:.0f}/s with wait_replicas=1 ({with_wait / without:.0%})"
        )
        assert with_wait > 0
