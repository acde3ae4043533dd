"""What the broker acknowledged survives a ``kill -9`` of the broker: records and committed offsets.

Against a Tansu of the test's own on S3 storage (moto), killed with SIGKILL and started again on the
same port. Tansu's memory storage forgets everything on a restart, so this test fails there: it is
the proof that the durable setup is durable, not a property of the client alone.
"""

from __future__ import annotations

import uuid

import pytest

from amb_core import Message, MessageBus
from amb_core.testing.conformance import wait_until
from amb_kafka import KafkaTransport

from .conftest import DurableBroker

pytestmark = pytest.mark.anyio


async def test_acknowledged_records_and_committed_offsets_survive_kill_9(
    durable_broker: DurableBroker,
) -> None:
    """50 records handled and committed by a group, 50 more acknowledged but not consumed; the
    broker is SIGKILLed and started again. The group resumes exactly at its committed offset (gets
    the 50 unconsumed ones, none of the first 50 again) and a replay from the earliest offset finds
    all 100: nothing acknowledged was lost."""
    topic, group = f"durable{uuid.uuid4().hex[:8]}.orders", f"g-{uuid.uuid4().hex[:8]}"
    url = durable_broker.url + "&partitions=1"  # one partition: read back in publish order
    async with MessageBus(KafkaTransport(url)) as bus:
        for i in range(50):
            await bus.publish(topic, i)  # returns once the broker acknowledged it (acks=all)
        handled: list[Message] = []
        consumer = await bus.subscribe(topic, handled.append, group=group, start="earliest")
        await wait_until(lambda: len(handled) >= 50, 30, lambda: f"{len(handled)} of 50 handled")
        await bus.unsubscribe(consumer)  # commits the handled offsets synchronously
        assert [m.payload for m in handled] == list(range(50))
        await bus.publish_many(topic, range(50, 100))  # acknowledged, never consumed by the group

    durable_broker.kill()
    durable_broker.start()

    async with MessageBus(KafkaTransport(url)) as bus:
        resumed: list[Message] = []
        replay: list[Message] = []
        await bus.subscribe(topic, resumed.append, group=group, start="earliest")
        await bus.subscribe(topic, replay.append, start="earliest")
        await wait_until(
            lambda: len(resumed) >= 50 and len(replay) >= 100,
            60,
            lambda: f"group: {len(resumed)} of 50, replay: {len(replay)} of 100",
        )
        # One partition, read in order: a group that lost its offset would see 0..49 first.
        assert [m.payload for m in resumed] == list(range(50, 100))
        assert [m.payload for m in replay] == list(range(100))
