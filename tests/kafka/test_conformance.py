"""The Kafka transport passes AMB's conformance suite against a real Kafka-protocol broker (Tansu).

Foreign bytes and the read-back of stored records go through plain confluent-kafka clients of
their own (the raw driver), never through the transport; the restart cases use a Tansu of their
own on S3 storage, which keeps what it acknowledged through a kill -9.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import pytest
from confluent_kafka import Consumer, Producer

from amb_core.testing.conformance import RestartableBroker, TransportConformance
from amb_core.transport import Transport
from amb_kafka import KafkaTransport

from .conftest import DurableBroker


def _raw_producer(transport: KafkaTransport) -> Producer:
    return Producer({"bootstrap.servers": transport.config.bootstrap, "acks": "all"})


class TestKafkaConformance(TransportConformance):
    many = 2000
    ack_wait = 1.0
    quiet = 1.5
    timeout = 30.0

    @pytest.fixture
    def make_transport(self, kafka_url: str) -> Callable[[], Transport]:
        return lambda: KafkaTransport(kafka_url)

    @pytest.fixture
    def restartable_broker(self, durable_broker: DurableBroker) -> RestartableBroker:
        return RestartableBroker(
            lambda: KafkaTransport(durable_broker.url), durable_broker.kill, durable_broker.start
        )

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        """A plain confluent-kafka producer: the record's value only, no headers."""
        assert isinstance(transport, KafkaTransport)
        await transport.ensure_topic(topic)  # as the bus creates its topics (Tansu would make 4)

        def produce() -> None:
            producer = _raw_producer(transport)
            reports: list[Any] = []
            producer.produce(topic, body, on_delivery=lambda err, msg: reports.append(err))
            assert producer.flush(30) == 0 and reports == [None], reports

        await anyio.to_thread.run_sync(produce)

    async def capture_raw(
        self, transport: Transport, topic: str, publish: Callable[[], Awaitable[Any]]
    ) -> tuple[bytes, Mapping[str, str]]:
        """A plain consumer of its own reads the first record of ``topic`` from the start."""
        assert isinstance(transport, KafkaTransport)
        await publish()

        def read() -> tuple[bytes, dict[str, str]]:
            consumer = Consumer(
                {
                    "bootstrap.servers": transport.config.bootstrap,
                    "group.id": f"capture-{uuid.uuid4().hex[:8]}",
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": 6000,
                }
            )
            try:
                consumer.subscribe([topic])
                for _ in range(300):
                    record = consumer.poll(0.1)
                    if record is not None and record.error() is None:
                        headers = {k: (v or b"").decode() for k, v in record.headers() or []}
                        return bytes(record.value() or b""), headers
                raise AssertionError(f"no record on {topic} within 30s")
            finally:
                consumer.close()

        return await anyio.to_thread.run_sync(read)

    def test_capabilities(self, make_transport: Callable[[], Transport]) -> None:
        caps = make_transport().capabilities
        assert caps.names() == [
            "persistent",
            "consumer_groups",
            "at_least_once",
            "ordered",
            "native_wildcards",
            "replay",
            "headers",
        ]
        assert caps.max_message_size == 1_000_000
        assert (
            KafkaTransport("kafka://h:1?message.max.bytes=2000").capabilities.max_message_size
            == 2000
        )
