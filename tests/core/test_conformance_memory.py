"""The in-memory transport passes the whole conformance suite, plain and serialising."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from amb_core import MemoryHub, MemoryTransport
from amb_core.testing.conformance import TransportConformance
from amb_core.transport import Transport


class TestMemoryConformance(TransportConformance):
    ack_wait = 0.1

    @pytest.fixture
    def make_transport(self) -> Callable[[], Transport]:
        hub = MemoryHub()
        return lambda: MemoryTransport(hub)

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        assert isinstance(transport, MemoryTransport)
        await transport.publish_raw(topic, body)


class TestSerializingMemoryConformance(TestMemoryConformance):
    """Every message round-trips through the wire format, as on a real broker."""

    @pytest.fixture
    def make_transport(self) -> Callable[[], Transport]:
        hub = MemoryHub()
        return lambda: MemoryTransport(hub, serialize=True)
