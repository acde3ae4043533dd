"""The Redis transport passes the conformance suite in both modes, against a real Redis.

The raw-driver providers use redis-py alone, never the transport's own publishing: foreign bytes
are XADDed (Streams) or PUBLISHed (pub/sub) as another program would, and ``capture_raw`` reads back
what a publish stored (XRANGE) or sent (a plain SUBSCRIBE). ``restartable_broker`` is a
redis-server this fixture owns, with an append-only file fsynced on every write, so that what Redis
acknowledged survives a kill -9.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from amb_core.testing.conformance import RestartableBroker, TransportConformance
from amb_core.transport import Transport
from amb_redis import RedisTransport
from amb_redis.streams import BODY

from .conftest import start_redis

pytestmark = pytest.mark.redis


def _raw(transport: Transport) -> tuple[Any, RedisTransport]:
    """A plain redis-py client on the transport's Redis (its URL, AMB's options removed)."""
    assert isinstance(transport, RedisTransport)
    return aioredis.Redis.from_url(transport.config.url), transport


class TestStreamsConformance(TransportConformance):
    """Streams mode: durable, groups, at least once, replay."""

    mode = "streams"
    ack_wait = 1.0

    def options(self) -> dict[str, Any]:
        return {"mode": self.mode, "discover": 0.1, "heartbeat": 0.5}

    @pytest.fixture
    def make_transport(self, redis_url: str, namespace: str) -> Callable[[], Transport]:
        return lambda: RedisTransport(redis_url, namespace=namespace, **self.options())

    @pytest.fixture
    def restartable_broker(self) -> Iterator[RestartableBroker]:
        server = start_redis(durable=True)
        url = f"redis://127.0.0.1:{server.port}"
        try:
            yield RestartableBroker(
                make_transport=lambda: RedisTransport(url, **self.options()),
                kill=server.kill,
                start=server.start,
            )
        finally:
            server.close()

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

    def test_capabilities(self, make_transport: Callable[[], Transport]) -> None:
        assert make_transport().capabilities.names() == [
            "persistent",
            "consumer_groups",
            "at_least_once",
            "ordered",
            "replay",
            "headers",
            "delivery_count",
        ]


class TestPubSubConformance(TestStreamsConformance):
    """Pub/sub mode: lowest latency, at most once, native (broad) wildcards; no native headers
    (the packed envelope), so ``capture_raw`` returns the bytes as sent and no headers."""

    mode = "pubsub"

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        raw, redis_transport = _raw(transport)
        try:
            await raw.publish(redis_transport.config.key(topic), body)
        finally:
            await raw.aclose()

    async def capture_raw(
        self, transport: Transport, topic: str, publish: Callable[[], Awaitable[Any]]
    ) -> tuple[bytes, Mapping[str, str]]:
        raw, redis_transport = _raw(transport)
        listener = raw.pubsub()
        try:
            await listener.subscribe(redis_transport.config.key(topic))
            with anyio.fail_after(10):  # the confirmation first: then the publish is seen
                while (await listener.get_message(timeout=1.0) or {}).get("type") != "subscribe":
                    pass
                await publish()
                while True:
                    message = await listener.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        return message["data"], {}
        finally:
            await listener.aclose()
            await raw.aclose()

    def test_capabilities(self, make_transport: Callable[[], Transport]) -> None:
        assert make_transport().capabilities.names() == ["ordered", "native_wildcards"]

    @pytest.mark.anyio
    async def test_capture_raw_sees_the_packed_envelope(
        self, make_transport: Callable[[], Transport], topic: str
    ) -> None:
        """Pub/sub's metadata rides inside the body: ``AMB1{headers}\\n<payload>`` on the wire."""
        from amb_core import MessageBus
        from amb_core.wire import H_ID, unpack

        async with MessageBus(make_transport(), name="packer") as bus:
            sent = []

            async def publish() -> None:
                sent.append(await bus.publish(f"{topic}.pk", {"k": 1}, headers={"trace": "t"}))

            data, headers = await self.capture_raw(bus.transport, f"{topic}.pk", publish)
        assert headers == {} and data.startswith(b"AMB1")
        body, packed = unpack(data)
        assert body == b'{"k":1}'
        assert packed[H_ID] == sent[0].id and packed["trace"] == "t"
