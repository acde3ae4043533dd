"""The in-memory transport passes the whole conformance suite, plain and serialising."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest

from amb_core import Capabilities, MemoryHub, MemoryTransport, Message, MessageTooLargeError
from amb_core.testing.conformance import TransportConformance
from amb_core.transport import Transport
from amb_core.wire import encode


class TestMemoryConformance(TransportConformance):
    ack_wait = 0.1

    @pytest.fixture
    def make_transport(self) -> Callable[[], Transport]:
        hub = MemoryHub()
        return lambda: MemoryTransport(hub)

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        assert isinstance(transport, MemoryTransport)
        await transport.publish_raw(topic, body)  # the hub's own entry for foreign bytes

    async def capture_raw(
        self, transport: Transport, topic: str, publish: Callable[[], Awaitable[Any]]
    ) -> tuple[bytes, Mapping[str, str]]:
        """The hub keeps the message itself; what it retained, in its wire form."""
        assert isinstance(transport, MemoryTransport)
        await publish()
        stored = transport.hub.retained[-1]
        assert stored.topic == topic
        return encode(stored)


class TestSerializingMemoryConformance(TestMemoryConformance):
    """Every message round-trips through the wire format, as on a real broker."""

    @pytest.fixture
    def make_transport(self) -> Callable[[], Transport]:
        hub = MemoryHub()
        return lambda: MemoryTransport(hub, serialize=True)


class _LimitedMemory(MemoryTransport):
    """An at-most-once broker with a size limit, as Redis pub/sub or core NATS are: the cases for
    the size limit, reduced dead letters and the counted loss of a letter run on it."""

    LIMIT = 64 * 1024
    capabilities = Capabilities(ordered=True, native_wildcards=True, max_message_size=LIMIT)

    async def publish(self, message: Message) -> None:
        body, headers = encode(message)
        size = len(body) + sum(len(k) + len(v) for k, v in headers.items())
        if size > self.LIMIT:
            raise MessageTooLargeError(size, self.LIMIT, message.topic)
        await super().publish(message)


class TestLimitedAtMostOnceMemoryConformance(TestMemoryConformance):
    @pytest.fixture
    def make_transport(self) -> Callable[[], Transport]:
        hub = MemoryHub()
        return lambda: _LimitedMemory(hub)
