"""The Redis transport passes the conformance suite in both modes, against a real Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from amb_core.testing.conformance import TransportConformance
from amb_core.transport import Transport
from amb_redis import RedisTransport

pytestmark = pytest.mark.redis


class TestStreamsConformance(TransportConformance):
    """Streams mode: durable, groups, at least once, replay."""

    ack_wait = 1.0

    @pytest.fixture
    def make_transport(self, redis_url: str, namespace: str) -> Callable[[], Transport]:
        return lambda: RedisTransport(redis_url, mode="streams", namespace=namespace, discover=0.1)

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        assert isinstance(transport, RedisTransport)
        await transport.publish_raw(topic, body)

    def test_capabilities(self, make_transport: Callable[[], Transport]) -> None:
        assert make_transport().capabilities.names() == [
            "persistent",
            "consumer_groups",
            "at_least_once",
            "ordered",
            "replay",
            "headers",
        ]


class TestPubSubConformance(TestStreamsConformance):
    """Pub/sub mode: lowest latency, at most once, native (broad) wildcards."""

    @pytest.fixture
    def make_transport(self, redis_url: str, namespace: str) -> Callable[[], Transport]:
        return lambda: RedisTransport(redis_url, mode="pubsub", namespace=namespace)

    def test_capabilities(self, make_transport: Callable[[], Transport]) -> None:
        assert make_transport().capabilities.names() == ["ordered", "native_wildcards"]
