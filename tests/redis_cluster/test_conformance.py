"""The conformance suite against a Redis Cluster (three masters, a replica each), in both modes.

The cases are tests/redis/test_conformance.py's; what differs is where the transports connect
(``redis+cluster://`` with every node as a seed) and how the raw-driver providers reach Redis: a
``RedisCluster`` client for XADD/XRANGE, and, in pub/sub mode, SPUBLISH and an SSUBSCRIBE on the
master of the channel's slot (sharded pub/sub). The restart cases kill the whole cluster (every
node, SIGKILL) and start it again; each node keeps an append-only file fsynced on every write.
Killing one master under load is tests/redis_cluster/test_failover.py.

Pub/sub mode runs twice: sharded (the default) refuses wildcard subscriptions with
``RedisUnsupportedError`` (sharded pub/sub has no patterns; docs/backends/redis.md), so the cases
that subscribe to a pattern are replaced there by a test of that error; ``pubsub=classic``
(broadcast PUBLISH, (P)SUBSCRIBE on one node) runs every case.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import anyio
import attrs
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from amb_core import MessageBus
from amb_core.testing.conformance import RestartableBroker
from amb_core.transport import Transport
from amb_redis import RedisTransport, RedisUnsupportedError
from amb_redis.streams import BODY
from tests.redis import test_conformance as single

from .cluster import start_redis_cluster

pytestmark = [pytest.mark.redis, pytest.mark.cluster]


def _raw(transport: Transport) -> tuple[Any, RedisTransport]:
    """A plain redis-py cluster client on the transport's cluster."""
    assert isinstance(transport, RedisTransport)
    config = transport.config
    seeds = [ClusterNode(host, port) for host, port in config.seeds[1:]]
    return RedisCluster.from_url(config.url, startup_nodes=seeds), transport


def _declares_failover_loss(single_case: Callable[..., None]) -> Callable[..., None]:
    """A cluster transport declares what the single server's does, plus ``failover_loss`` (no
    ``wait_replicas`` in these tests: Redis replicates asynchronously)."""

    def test_capabilities(self: Any, make_transport: Callable[[], Transport]) -> None:
        transport = make_transport()
        assert transport.capabilities.failover_loss
        single_case(self, lambda: _without_failover_loss(transport))

    return test_capabilities


def _without_failover_loss(transport: Transport) -> Transport:
    transport.capabilities = attrs.evolve(transport.capabilities, failover_loss=False)
    return transport


class TestClusterStreamsConformance(single.TestStreamsConformance):
    """Streams mode on the cluster: topics spread over the masters by their hash tag."""

    test_capabilities = _declares_failover_loss(single.TestStreamsConformance.test_capabilities)

    @pytest.fixture
    def make_transport(self, redis_cluster_url: str, namespace: str) -> Callable[[], Transport]:
        return lambda: RedisTransport(redis_cluster_url, namespace=namespace, **self.options())

    @pytest.fixture
    def restartable_broker(self) -> Iterator[RestartableBroker]:
        """A durable cluster of this test alone, killed and started again as a whole."""
        cluster = start_redis_cluster(durable=True)
        try:
            yield RestartableBroker(
                make_transport=lambda: RedisTransport(cluster.url(), **self.options()),
                kill=cluster.kill_all,
                start=cluster.start_all,
            )
        finally:
            cluster.close()

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        raw, redis_transport = _raw(transport)
        try:
            await raw.xadd(redis_transport.config.key(topic), {BODY: body})
        finally:
            await raw.aclose()

    async def capture_raw(
        self, transport: Transport, topic: str, publish: Callable[[], Awaitable[Any]]
    ) -> tuple[bytes, Mapping[str, str]]:
        raw, redis_transport = _raw(transport)
        key = redis_transport.config.key(topic)
        try:
            last = await raw.xrevrange(key, count=1)
            after = last[0][0].decode() if last else "0-0"
            await publish()
            entries = await raw.xrange(key, min=f"({after}", max="+")
        finally:
            await raw.aclose()
        assert len(entries) == 1, entries
        fields = {k.decode(): v for k, v in entries[0][1].items()}
        body = fields.pop(BODY)
        return body, {k: v.decode() for k, v in fields.items()}

    def test_keys_carry_the_topic_as_hash_tag(
        self, make_transport: Callable[[], Transport]
    ) -> None:
        transport = make_transport()
        assert isinstance(transport, RedisTransport)
        assert transport.config.key("orders.created").endswith(":{orders.created}")


WILDCARD_CASES = (
    "test_a_stream_that_fails_midway_raises_after_its_chunks",
    "test_a_request_past_its_deadline_is_never_handled",
    "test_retries_stop_at_the_deadline",
    "test_foreign_messages_reach_wildcard_subscribers",
    "test_dead_letter_that_cannot_be_stored_is_not_settled",
    "test_wildcards_are_exact",
    "test_concurrent_publishers_and_subscribers_lose_nothing",
    "test_request_reply",
    "test_retry_then_success",
    "test_poison_message_goes_to_dlq_and_subscription_lives",
    "test_undecodable_bytes_go_to_dlq",
    "test_expired_messages_are_dead_lettered_not_handled",
    "test_rejected_message_skips_retries",
    "test_content_routing",
)
"""The cases that subscribe to a pattern (a responder on ``svc.*``, a dead-letter watcher on
``dlq.>``...): sharded pub/sub refuses them, typed; ``pubsub=classic`` runs them."""


def _refused(self: object) -> None:
    pytest.skip("subscribes to a wildcard: sharded pub/sub refuses it (see the typed-error test)")


class TestClusterPubSubConformance(TestClusterStreamsConformance):
    """Sharded pub/sub: SPUBLISH to, and SSUBSCRIBE on, the master of the topic's slot."""

    mode = "pubsub"
    for _case in WILDCARD_CASES:
        locals()[_case] = _refused
    del _case
    test_capabilities = _declares_failover_loss(single.TestPubSubConformance.test_capabilities)
    test_capture_raw_sees_the_packed_envelope = (
        single.TestPubSubConformance.test_capture_raw_sees_the_packed_envelope
    )

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        raw, redis_transport = _raw(transport)
        try:
            await raw.execute_command("SPUBLISH", redis_transport.config.key(topic), body)
        finally:
            await raw.aclose()

    async def capture_raw(
        self, transport: Transport, topic: str, publish: Callable[[], Awaitable[Any]]
    ) -> tuple[bytes, Mapping[str, str]]:
        raw, redis_transport = _raw(transport)
        key = redis_transport.config.key(topic)
        await raw.initialize()
        node = raw.get_node_from_key(key)
        plain = aioredis.Redis(host=node.host, port=node.port)
        listener = plain.pubsub()
        try:
            await listener.ssubscribe(key)
            with anyio.fail_after(10):  # the confirmation first: then the publish is seen
                while (await listener.get_message(timeout=1.0) or {}).get("type") != "ssubscribe":
                    pass
                await publish()
                while True:
                    message = await listener.get_message(timeout=1.0)
                    if message is not None and message["type"] == "smessage":
                        return message["data"], {}
        finally:
            await listener.aclose()
            await plain.aclose()
            await raw.aclose()

    @pytest.mark.anyio
    async def test_wildcards_raise_a_typed_error(
        self, make_transport: Callable[[], Transport], topic: str
    ) -> None:
        """Sharded pub/sub has no patterns: a wildcard subscription fails at once, typed."""

        async def handler(message: Any) -> None:
            pass

        async with MessageBus(make_transport(), name="wild") as bus:
            with anyio.fail_after(10), pytest.raises(RedisUnsupportedError, match="sharded"):
                await bus.subscribe(f"{topic}.*", handler)


class TestClusterClassicPubSubConformance(single.TestPubSubConformance):
    """``pubsub=classic``: PUBLISH (broadcast by the cluster) and (P)SUBSCRIBE on one node."""

    def options(self) -> dict[str, Any]:
        return {**super().options(), "pubsub": "classic"}

    make_transport = TestClusterStreamsConformance.make_transport
    restartable_broker = TestClusterStreamsConformance.restartable_broker
    test_capabilities = _declares_failover_loss(single.TestPubSubConformance.test_capabilities)

    async def capture_raw(
        self, transport: Transport, topic: str, publish: Callable[[], Awaitable[Any]]
    ) -> tuple[bytes, Mapping[str, str]]:
        assert isinstance(transport, RedisTransport)
        host, port = transport.config.seeds[0]
        plain = aioredis.Redis(host=host, port=port)
        listener = plain.pubsub()
        try:
            await listener.subscribe(transport.config.key(topic))
            with anyio.fail_after(10):
                while (await listener.get_message(timeout=1.0) or {}).get("type") != "subscribe":
                    pass
                await publish()
                while True:
                    message = await listener.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        return message["data"], {}
        finally:
            await listener.aclose()
            await plain.aclose()

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        assert isinstance(transport, RedisTransport)
        host, port = transport.config.seeds[-1]  # any node: the cluster broadcasts PUBLISH
        plain = aioredis.Redis(host=host, port=port)
        try:
            await plain.publish(transport.config.key(topic), body)
        finally:
            await plain.aclose()
