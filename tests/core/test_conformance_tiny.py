"""The worked transport of docs/writing-a-backend.md passes the whole conformance suite."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from amb_tiny import TinyBroker, TinyTransport

from amb_core.testing.conformance import RestartableBroker, TransportConformance
from amb_core.transport import Transport


class TestTinyConformance(TransportConformance):
    quiet = 0.1  # a knob: in one process, a tenth of a second of silence proves absence

    @pytest.fixture
    def make_transport(self) -> Callable[[], Transport]:
        broker = TinyBroker()  # one broker per test, shared by the transports the test makes
        return lambda: TinyTransport(broker)

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        """As a program that knows nothing of AMB: straight to the broker, no headers."""
        assert isinstance(transport, TinyTransport)
        transport.broker.send(topic, body, {})

    @pytest.fixture
    def restartable_broker(self) -> RestartableBroker:
        broker = TinyBroker()
        return RestartableBroker(lambda: TinyTransport(broker), broker.kill, broker.start)

    def test_declares_what_the_suite_proves(self) -> None:
        caps = TinyTransport().capabilities
        assert caps.names() == ["consumer_groups", "ordered"]
        assert caps.max_message_size == TinyBroker().limit
