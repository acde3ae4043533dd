"""The NATS transport passes the conformance suite in both modes, against a real nats-server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from amb_core.testing.conformance import TransportConformance
from amb_core.transport import Transport
from amb_nats import NATSTransport

pytestmark = pytest.mark.nats


class TestJetStreamConformance(TransportConformance):
    """JetStream mode: durable, groups, at least once, native delay, replay."""

    ack_wait = 1.0

    @pytest.fixture
    def make_transport(self, nats_url: str, stream_prefix: str) -> Callable[[], Transport]:
        return lambda: NATSTransport.from_url(
            nats_url, mode="jetstream", stream_prefix=stream_prefix, storage="memory"
        )

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        assert isinstance(transport, NATSTransport)
        await transport.publish_raw(topic, body)

    def test_capabilities(self, make_transport: Callable[[], Transport]) -> None:
        assert make_transport().capabilities.names() == [
            "persistent",
            "consumer_groups",
            "at_least_once",
            "ordered",
            "native_wildcards",
            "native_delay",
            "replay",
            "headers",
        ]


class TestCoreConformance(TestJetStreamConformance):
    """Core NATS mode: at most once, native wildcards, queue groups, native request/reply."""

    @pytest.fixture
    def make_transport(self, nats_url: str, stream_prefix: str) -> Callable[[], Transport]:
        return lambda: NATSTransport.from_url(nats_url)

    def test_capabilities(self, make_transport: Callable[[], Transport]) -> None:
        assert make_transport().capabilities.names() == [
            "consumer_groups",
            "ordered",
            "native_wildcards",
            "native_request_reply",
            "headers",
        ]
