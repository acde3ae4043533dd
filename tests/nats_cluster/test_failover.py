"""Killing a JetStream stream's leader under load (issue 19): nothing acknowledged is lost, the
clients fail over by themselves, and the time to recover is measured and printed.

A cluster of this test alone (three nodes, file storage); a stream with ``replicas=3``. A publisher
bus publishes numbered messages durably, one after the other, and two buses in one consumer group
handle them. Each round moves the stream's leader and the group consumer's leader onto the node a
client is connected to (round 1: the publisher's, round 2: a consumer's), so that the kill takes
the leaders and a client connection at once, and SIGKILLs that node. The buses are never
restarted. The round then measures, from the kill:

- *reconnected*: until every client that was connected to the node is connected to another;
- *publish*: until the first publish begun after the kill returned (its message acknowledged by
  the new stream leader; the publisher publishes one message at a time, so it waited that long);
- *consume*: until the first message published after the kill was handled;

and the killed node is started again and caught up before the next round. At the end every
message whose publish returned has been handled (at least once); publishes that raised are
counted (they may or may not have been stored, and were not acknowledged). ``nox -s cluster``
prints the figures (``-s``); docs/scaling.md has those of a run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import nats
import pytest

from amb_core import Message, MessageBus
from amb_core.errors import TransportError
from amb_core.testing.conformance import wait_until
from amb_nats import NATSTransport
from amb_nats.naming import consumer_name, namespace_of, stream_name
from tests.nats.cluster import NatsCluster, monitor, start_nats_cluster

pytestmark = [pytest.mark.nats, pytest.mark.cluster, pytest.mark.anyio, pytest.mark.slow]

TOPIC = "failover.work"
GROUP = "workers"
PREFIX = "FO"
ROUNDS = 2
AFTER_KILL = 4.0  # seconds of publishing after each kill
PUBLISH_TIMEOUT = 15  # longer than a Raft election (nats-server: 4 to 9 s), see docs/scaling.md


@pytest.fixture
def own_cluster() -> Iterator[NatsCluster]:
    cluster = start_nats_cluster()
    try:
        yield cluster
    finally:
        cluster.close()


def connected_node(bus: MessageBus, cluster: NatsCluster) -> Any:
    transport = bus.transport
    assert isinstance(transport, NATSTransport)
    port = transport._nc.connected_url.port
    return next(node for node in cluster.nodes if node.port == port)


async def leaders(nc: Any, stream: str, consumer: str) -> tuple[str | None, str | None]:
    js = nc.jetstream()
    s = await js.stream_info(stream)
    c = await js.consumer_info(stream, consumer)
    return (s.cluster.leader if s.cluster else None), (c.cluster.leader if c.cluster else None)


async def move_leaders(nc: Any, stream: str, consumer: str, target: str) -> None:
    """Step the stream's and the consumer's leaders down until both are on ``target`` (the server
    prefers ``placement.preferred``; older ones pick at random, hence the loop)."""
    body = json.dumps({"placement": {"preferred": target}}).encode()
    for _ in range(30):
        try:
            stream_leader, consumer_leader = await leaders(nc, stream, consumer)
        except Exception:  # an election under way
            await anyio.sleep(0.3)
            continue
        if stream_leader == target and consumer_leader == target:
            return
        if stream_leader != target:
            await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", body, timeout=5)
        elif consumer_leader != target:
            await nc.request(
                f"$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{consumer}", body, timeout=5
            )
        await anyio.sleep(0.5)
    pytest.fail(f"could not move the leaders of {stream} onto {target}")


async def watch_reconnection(buses: list[MessageBus], out: list[float]) -> None:
    """Append the moment every one of ``buses`` is connected again (nats-py counts a reconnection
    and is connected: to another node, the killed one being down)."""
    clients = [bus.transport._nc for bus in buses]  # type: ignore[attr-defined]
    before = [nc.stats["reconnects"] for nc in clients]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(
            nc.stats["reconnects"] > n and nc.is_connected
            for nc, n in zip(clients, before, strict=True)
        ):
            out.append(time.monotonic())
            return
        await anyio.sleep(0.005)


async def wait_caught_up(nc: Any, stream: str, size: int) -> None:
    """Until the stream has a leader and every other replica is current."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            info = await nc.jetstream().stream_info(stream)
            cluster = info.cluster
            replicas = (cluster.replicas or []) if cluster else []
            current = [r for r in replicas if r.current]
            if cluster and cluster.leader and len(current) == size - 1:
                return
        except Exception:
            pass
        await anyio.sleep(0.2)
    pytest.fail(f"stream {stream} did not catch up")


async def test_killing_the_stream_leader_loses_nothing_acknowledged(
    own_cluster: NatsCluster,
) -> None:
    cluster = own_cluster
    url = (
        f"{cluster.url()}?mode=jetstream&replicas=3&storage=file&stream_prefix={PREFIX}"
        f"&publish_timeout={PUBLISH_TIMEOUT}"
    )
    stream = stream_name(PREFIX, namespace_of(TOPIC))
    consumer = consumer_name(GROUP, TOPIC)
    started: dict[int, float] = {}  # message -> when its publish began
    acked: dict[int, float] = {}  # message -> when its publish returned
    refused: list[tuple[int, float, str]] = []  # publishes that raised
    handled: dict[int, float] = {}  # message -> when first handled
    handled_times = 0
    stop = anyio.Event()

    async def handle(message: Message) -> None:
        nonlocal handled_times
        handled_times += 1
        handled.setdefault(message.payload, time.monotonic())

    async def publish_all(bus: MessageBus) -> None:
        n = 0
        while not stop.is_set():
            started[n] = time.monotonic()
            try:
                await bus.publish(TOPIC, n)
                acked[n] = time.monotonic()
            except TransportError as exc:
                refused.append((n, time.monotonic(), f"{type(exc).__name__}: {exc}"))
            n += 1
            await anyio.sleep(0.002)

    rounds: list[dict[str, Any]] = []
    admin = await nats.connect(list(NATSTransport.from_url(url).config.servers))
    publisher = MessageBus.from_url(url)
    members = [MessageBus.from_url(url), MessageBus.from_url(url)]
    try:
        async with publisher, members[0], members[1], anyio.create_task_group() as tg:
            for member in members:
                await member.subscribe(TOPIC, handle, group=GROUP, ack_wait=2.0)
            tg.start_soon(publish_all, publisher)
            await wait_until(lambda: len(handled) >= 200, 30, "the first messages")
            for r in range(ROUNDS):
                client = publisher if r % 2 == 0 else members[0]
                victim = connected_node(client, cluster)
                await move_leaders(admin, stream, consumer, victim.name)
                on_victim = [
                    name
                    for name, bus in (("publisher", publisher), ("member 1", members[0]))
                    if connected_node(bus, cluster) is victim
                ]
                if connected_node(members[1], cluster) is victim:
                    on_victim.append("member 2")
                clients = [
                    bus for bus in (publisher, *members) if connected_node(bus, cluster) is victim
                ]
                meta = monitor(victim.http_port, "/jsz")["meta_cluster"]["leader"]  # type: ignore[attr-defined]
                reconnected: list[float] = []
                tg.start_soon(watch_reconnection, clients, reconnected)
                await anyio.sleep(0.05)  # it has read the counts
                killed = time.monotonic()
                victim.kill()
                await anyio.sleep(AFTER_KILL)

                def after(killed: float = killed) -> list[int]:
                    return [n for n, t in list(started.items()) if t >= killed]

                await wait_until(
                    lambda: any(n in acked for n in after()),
                    30,
                    lambda: f"a publish after the kill to return: raised {refused[-1:]}",
                )
                await wait_until(
                    lambda: any(n in handled for n in after()),
                    30,
                    lambda: (
                        f"a message published after the kill to be handled: {len(after())} "
                        f"published, {sum(n in acked for n in after())} acknowledged, "
                        f"handled {len(handled)}"
                    ),
                )
                first_ack = min(acked[n] for n in after() if n in acked)
                first_handled = min(handled[n] for n in after() if n in handled)
                rounds.append(
                    {
                        "round": r + 1,
                        "killed": victim.name.rsplit("-", 1)[1],
                        "clients on it": ", ".join(on_victim) or "none",
                        "meta leader on it": "yes" if meta == victim.name else "no",
                        "reconnected": (reconnected[0] - killed) if reconnected else None,
                        "publish": first_ack - killed,
                        "consume": first_handled - killed,
                        "raised": sum(1 for _, t, _ in refused if t >= killed),
                    }
                )
                await anyio.to_thread.run_sync(cluster.start, victim)
                await wait_caught_up(admin, stream, len(cluster.nodes))
            stop.set()
            await wait_until(
                lambda: set(acked) <= set(handled),
                60,
                lambda: (
                    f"every acknowledged message; lost {sorted(set(acked) - set(handled))[:20]}"
                ),
            )
    finally:
        await admin.close()

    print(f"\nNATS cluster failover: {len(acked)} publishes acknowledged, {len(refused)} raised")
    for row in rounds:
        shown = {k: f"{v:.2f}s" if isinstance(v, float) else v for k, v in row.items()}
        print("  " + ", ".join(f"{k}: {v}" for k, v in shown.items()))
    duplicates = handled_times - len(handled)
    print(f"  handled {len(handled)} messages, {duplicates} deliveries again; lost: 0")
    for n, _, why in refused[:5]:
        print(f"  raised: message {n}: {why}")
    assert set(acked) <= set(handled), "every acknowledged message was handled"
    assert not refused, "with publish_timeout above the election time, no publish raised"
