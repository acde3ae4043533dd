"""Delivery.ack_now: the bus settles without a coroutine where a transport can, and awaits ``ack``
wherever a transport's settling needs it (a subclass that overrides only ``ack`` included)."""

from __future__ import annotations

import anyio
import pytest

from amb_core import Delivery, MemoryTransport, Message, MessageBus, Subscription, SubscriptionSpec
from amb_core.testing.conformance import wait_until

pytestmark = pytest.mark.anyio


class AwaitedAck(Delivery):
    """A broker ack that needs I/O: only ``ack`` is overridden."""

    __slots__ = ("acked",)

    def __init__(self, message: Message, acked: list[str]) -> None:
        super().__init__(message)
        self.acked = acked

    async def ack(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.acked.append(self.message.payload)


class InstantAck(AwaitedAck):
    """Both overridden: ``ack_now`` settles, ``ack`` must then not be needed."""

    __slots__ = ()

    def ack_now(self) -> bool:
        self.acked.append(f"now:{self.message.payload}")
        return True


def test_ack_now_defaults() -> None:
    message = Message("a.b", 1)
    assert Delivery(message).ack_now() is True, "the base ack does nothing: nothing to wait for"
    assert AwaitedAck(message, []).ack_now() is False, "an overridden ack must be awaited"
    acked: list[str] = []
    assert InstantAck(message, acked).ack_now() is True and acked == ["now:1"]


class Source(Subscription):
    def __init__(self, deliveries: list[Delivery]) -> None:
        self.deliveries = deliveries

    async def __anext__(self) -> Delivery:
        if not self.deliveries:
            await anyio.sleep_forever()
        return self.deliveries.pop(0)

    async def aclose(self) -> None:
        pass


class OneSource(MemoryTransport):
    def __init__(self, deliveries: list[Delivery]) -> None:
        super().__init__()
        self.deliveries = deliveries

    async def subscribe(self, spec: SubscriptionSpec) -> Subscription:
        if spec.pattern != "acks.t":
            return await super().subscribe(spec)
        return Source(self.deliveries)


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_the_bus_awaits_ack_where_ack_now_cannot(concurrency: int) -> None:
    acked: list[str] = []
    deliveries: list[Delivery] = [AwaitedAck(Message("acks.t", f"m{i}"), acked) for i in range(3)]
    deliveries.append(InstantAck(Message("acks.t", "m3"), acked))
    handled: list[str] = []
    async with MessageBus(OneSource(deliveries)) as bus:
        await bus.subscribe("acks.t", lambda m: handled.append(m.payload), concurrency=concurrency)
        await wait_until(lambda: len(acked) == 4, 5, "every delivery settled")
    assert sorted(handled) == ["m0", "m1", "m2", "m3"]
    assert sorted(acked) == ["m0", "m1", "m2", "now:m3"]
