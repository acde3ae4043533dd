"""The shape of the topics the bus creates: enough partitions by default for a group to share a
topic's work, one for a reply inbox; messages without a key spread over the partitions."""

from __future__ import annotations

import logging
import uuid
from collections import Counter

import anyio
import pytest
from confluent_kafka.admin import AdminClient

from amb_core import Message, MessageBus
from amb_core.testing.conformance import wait_until
from amb_kafka import KafkaTransport
from amb_kafka.config import DEFAULT_PARTITIONS

from ._groups import shares

pytestmark = pytest.mark.anyio


def _partitions(bootstrap: str, prefix: str) -> dict[str, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = admin.list_topics(timeout=10).topics
    return {name: len(t.partitions) for name, t in topics.items() if name.startswith(prefix)}


async def test_a_group_of_two_shares_a_default_topic(
    kafka_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The case a new user met with 1 partition: one member took all 200 messages."""
    caplog.set_level(logging.DEBUG, logger="amb.kafka")
    topic, group = f"share{uuid.uuid4().hex[:8]}", f"share-{uuid.uuid4().hex[:8]}"
    handled: Counter[int] = Counter()
    by: dict[str, list[int]] = {"a": [], "b": []}

    def handler_of(name: str):  # type: ignore[no-untyped-def]
        def handle(message: Message) -> None:
            handled[message.payload] += 1
            by[name].append(message.payload)

        return handle

    async with (
        MessageBus(KafkaTransport(kafka_url)) as a,
        MessageBus(KafkaTransport(kafka_url)) as b,
    ):
        await a.subscribe(topic, handler_of("a"), group=group)
        await b.subscribe(topic, handler_of("b"), group=group)
        await wait_until(
            lambda: len(shares(caplog, group, DEFAULT_PARTITIONS)) >= 2,
            60,
            "both members to have a share",
        )
        config = a.transport.config  # type: ignore[attr-defined]
        assert _partitions(config.bootstrap, topic) == {topic: DEFAULT_PARTITIONS}
        await a.publish_many(topic, list(range(200)))  # no key, as the new user did
        await wait_until(lambda: len(handled) >= 200, 30, lambda: f"all 200; {len(handled)}")
        await anyio.sleep(1.0)  # nothing more (no duplicate) arrives
    assert set(handled) == set(range(200)), "nothing lost"
    assert [p for p, n in handled.items() if n > 1] == [], "nothing handled twice"
    assert by["a"] and by["b"], f"one member idle: a {len(by['a'])}, b {len(by['b'])}"


async def test_a_reply_inbox_keeps_one_partition(kafka_url: str) -> None:
    """A bus's inbox is read by that bus alone: more partitions would only reorder its replies."""
    topic = f"inbox{uuid.uuid4().hex[:8]}"
    async with (
        MessageBus(KafkaTransport(kafka_url)) as server,
        MessageBus(KafkaTransport(kafka_url)) as client,
    ):
        await server.subscribe(topic, lambda message: "pong")
        assert (await client.request(topic, "ping", timeout=30)).payload == "pong"
        bootstrap = client.transport.config.bootstrap  # type: ignore[attr-defined]
        inboxes = _partitions(bootstrap, "_INBOX.")
    assert inboxes and set(inboxes.values()) == {1}, inboxes
