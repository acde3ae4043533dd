"""Several Tansu brokers over one S3 bucket (moto) are one cluster: Tansu's brokers are stateless,
each is leader of every partition and coordinator of every group, and they agree through the
storage alone (conditional PUTs, which moto's S3 honours). A bus on one broker and a bus on the
other see the same topics, records and groups.

Each broker calls itself node 111 in its metadata (Tansu 0.6 has no node-id option), so a client
should be given one broker: with both in one bootstrap list librdkafka sees node 111 move from one
address to the other at every metadata answer.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterator

import anyio
import pytest

from amb_core import Message, MessageBus
from amb_core.testing.conformance import wait_until
from amb_kafka import KafkaTransport
from amb_kafka.config import DEFAULT_PARTITIONS

from . import tansu
from ._groups import shares
from .conftest import S3_OPTIONS, with_test_options

pytestmark = pytest.mark.anyio


@pytest.fixture
def two_brokers(s3_endpoint: str) -> Iterator[tuple[str, str]]:
    """URLs of two started Tansu brokers sharing one bucket, for this test alone."""
    bucket = f"tansu-{uuid.uuid4().hex[:12]}"
    tansu.create_bucket(s3_endpoint, bucket)
    servers = [tansu.tansu_s3_server(s3_endpoint, bucket) for _ in range(2)]
    try:
        for server in servers:
            server.start()
        yield tuple(  # type: ignore[misc]
            with_test_options(f"kafka://127.0.0.1:{s.port}") + S3_OPTIONS for s in servers
        )
    finally:
        for server in servers:
            server.close()


async def test_two_brokers_on_one_storage_serve_one_group(
    two_brokers: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A member on each broker: the group splits the topic between them; records published
    through both brokers at once are all handled, each once."""
    caplog.set_level(logging.DEBUG, logger="amb.kafka")
    first, second = two_brokers
    topic, group = f"shared{uuid.uuid4().hex[:8]}", f"shared-{uuid.uuid4().hex[:8]}"
    count = 400
    handled: Counter[int] = Counter()
    by: Counter[str] = Counter()

    def handler_of(name: str):  # type: ignore[no-untyped-def]
        def handle(message: Message) -> None:
            handled[message.payload] += 1
            by[name] += 1

        return handle

    async with MessageBus(KafkaTransport(first)) as one, MessageBus(KafkaTransport(second)) as two:
        await one.subscribe(topic, handler_of("one"), group=group, start="earliest")
        await two.subscribe(topic, handler_of("two"), group=group, start="earliest")
        await wait_until(
            lambda: len(shares(caplog, group, DEFAULT_PARTITIONS)) >= 2,
            60,
            "a member on each broker to have a share",
        )
        # published half through each broker, concurrently: both append to the same partitions
        async with anyio.create_task_group() as tg:
            for bus, start in ((one, 0), (two, 1)):
                for key in range(4):
                    tg.start_soon(bus.publish_many, topic, list(range(start + 2 * key, count, 8)))
        await wait_until(
            lambda: len(handled) >= count, 90, lambda: f"all {count}; {len(handled)} ({dict(by)})"
        )
        await anyio.sleep(1.0)
    assert set(handled) == set(range(count)), "nothing lost"
    assert [p for p, n in handled.items() if n > 1] == [], "nothing handled twice"
    assert by["one"] and by["two"], f"a member idle: {dict(by)}"
