"""The core mode's coroutine-free paths: ``publish_now`` (a publish queued for nats-py's flusher)
and ``ready`` (a message nats-py has already queued), and when each declines."""

from __future__ import annotations

import uuid

import anyio
import pytest

from amb_core import Message, MessageBus
from amb_core.transport import SubscriptionSpec
from amb_nats import NATSTransport

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


async def test_ready_hands_out_what_nats_py_has_queued(nats_url: str) -> None:
    topic = f"fast.{uuid.uuid4().hex[:10]}"
    transport = NATSTransport.from_url(nats_url)
    async with MessageBus(transport) as bus:
        sub = await transport.subscribe(SubscriptionSpec(topic))
        assert sub.ready() is None  # nothing yet, and no waiting
        for i in range(3):
            await bus.publish(topic, i)
        with anyio.fail_after(5):
            while True:  # the messages reach nats-py's queue once the server sends them
                first = sub.ready()
                if first is not None:
                    break
                await anyio.sleep(0.01)
        rest = [await sub.__anext__() for _ in range(2)]
        assert [d.message.payload for d in (first, *rest)] == [0, 1, 2]
        await sub.aclose()
        assert sub.ready() is None


async def test_publish_now_declines_for_jetstream_and_when_disconnected(
    nats_url: str, stream_prefix: str
) -> None:
    message = Message(topic="fast.x", payload=1)
    core = NATSTransport.from_url(nats_url)
    assert not core.publish_now(message)  # not connected yet
    await core.connect()
    try:
        assert core.publish_now(message)
    finally:
        await core.aclose()
    assert not core.publish_now(message)  # closed
    jetstream = NATSTransport.from_url(nats_url, mode="jetstream", stream_prefix=stream_prefix)
    await jetstream.connect()
    try:
        assert not jetstream.publish_now(message)  # waits for its acknowledgement
    finally:
        await jetstream.aclose()


async def test_publish_now_declines_a_message_over_max_payload(nats_url: str) -> None:
    """Declined with nothing sent, so that publish() raises the typed error."""
    transport = NATSTransport.from_url(nats_url)
    await transport.connect()
    try:
        big = Message(topic="fast.big", payload="x" * (transport._client()._max_payload + 1))
        assert not transport.publish_now(big)
    finally:
        await transport.aclose()
