"""The Kafka transport passes AMB's conformance suite against a real Kafka-protocol broker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from amb_core.message import Message
from amb_core.testing.conformance import TransportConformance, wait_until
from amb_core.transport import Transport
from amb_kafka import KafkaTransport


class TestKafkaConformance(TransportConformance):
    many = 2000
    ack_wait = 1.0
    quiet = 1.5
    timeout = 30.0

    @pytest.fixture
    def make_transport(self, kafka_url: str) -> Callable[[], Transport]:
        return lambda: KafkaTransport(kafka_url)

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        assert isinstance(transport, KafkaTransport)
        await transport.publish_raw(topic, body)

    async def test_redelivery_after_consumer_dies_mid_handler(
        self, make_transport: Any, topic: str
    ) -> None:
        """As the suite's case, except the attempt number: Kafka keeps no delivery count (the place
        for one, commit metadata, is dropped by Tansu), so a message redelivered to *another*
        consumer after a crash starts again at attempt 1. Nothing is lost; retries within one
        consumer count normally (test_retry_then_success)."""
        started = anyio.Event()

        async def hang(message: Message) -> None:
            started.set()
            await anyio.sleep_forever()

        group = f"{topic}-crashers"
        async with self.open_bus(make_transport, drain_timeout=0.05) as doomed:
            await doomed.subscribe(f"{topic}.crash", hang, group=group)
            await doomed.publish(f"{topic}.crash", "survivor")
            with anyio.fail_after(self.timeout):
                await started.wait()
        async with self.open_bus(make_transport) as heir:
            got = await self.collect(heir, f"{topic}.crash", group=group)
            await wait_until(lambda: len(got) >= 1, self.timeout, "redelivery")
            assert got[0].payload == "survivor"
