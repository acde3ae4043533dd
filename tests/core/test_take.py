"""Subscription.take: messages handled without a delivery each, a delivery made only when one
needs settling (a failed handler, a request), and every other item read as before."""

from __future__ import annotations

import anyio
import pytest

from amb_core import (
    Delivery,
    MemoryTransport,
    Message,
    MessageBus,
    RetryPolicy,
    Subscription,
    SubscriptionSpec,
)
from amb_core.memory import MemoryHub
from amb_core.subscriber import _taker
from amb_core.testing.conformance import wait_until

pytestmark = pytest.mark.anyio


class Recorded(Delivery):
    """A delivery that records how it was settled."""

    __slots__ = ("log",)

    def __init__(self, message: Message, log: list[str]) -> None:
        super().__init__(message, message.attempt)
        self.log = log

    async def ack(self) -> None:
        self.log.append(f"ack:{self.message.payload}")

    async def nack(self, delay: float | None = None) -> None:
        self.log.append(f"nack:{self.message.payload}")


class Taking(Subscription):
    """A third party's subscription that hands out bare messages."""

    exact = True

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        self.log: list[str] = []
        self.made: list[str] = []  # payloads delivery_of was asked for

    def take(self) -> Message | None:
        return self.messages.pop(0) if self.messages else None

    def delivery_of(self, message: Message) -> Delivery:
        self.made.append(message.payload)
        return Recorded(message, self.log)

    async def __anext__(self) -> Delivery:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        pass


class Broad(Taking):
    exact = False  # take() is then not used: the bus must check each topic itself


class Serving(MemoryTransport):
    def __init__(self, source: Subscription) -> None:
        super().__init__()
        self.source = source

    async def subscribe(self, spec: SubscriptionSpec) -> Subscription:
        if spec.pattern != "take.t":
            return await super().subscribe(spec)
        return self.source


def test_by_default_nothing_is_taken() -> None:
    class Plain(Subscription):
        async def __anext__(self) -> Delivery:
            raise StopAsyncIteration

        async def aclose(self) -> None:
            pass

    plain = Plain()
    assert plain.take() is None
    with pytest.raises(NotImplementedError, match="takes no messages"):
        plain.delivery_of(Message("a.b", 1))
    assert _taker(plain) is None, "the default is not called per message"
    assert _taker(Broad([])) is None, "take() is used only on an exact subscription"
    taking = Taking([])
    assert _taker(taking) == taking.take


async def test_a_taken_message_gets_a_delivery_only_when_it_needs_settling() -> None:
    messages = [Message("take.t", "ok"), Message("take.t", "bad"), Message("take.t", "ok2")]
    source = Taking(messages)
    handled: list[str] = []

    def handler(message: Message) -> None:
        handled.append(message.payload)
        if message.payload == "bad":
            raise RuntimeError("fails")

    async with MessageBus(Serving(source)) as bus:
        await bus.subscribe(
            "take.t", handler, retry=RetryPolicy(max_attempts=3, initial_delay=0.01)
        )
        await wait_until(lambda: source.log == ["nack:bad"], 5, "the failed message nacked")
    assert handled == ["ok", "bad", "ok2"]
    assert source.made == ["bad"], "handled messages needed no delivery"


async def test_a_taken_request_is_answered_and_settled() -> None:
    request = Message("take.t", "q", reply_to="take.reply", correlation_id="c-1")
    source = Taking([])
    replies: list[object] = []
    async with MessageBus(Serving(source)) as bus:
        await bus.subscribe("take.reply", lambda m: replies.append(m.payload))
        source.messages.append(request)  # taken as soon as the responder subscribes
        await bus.subscribe("take.t", lambda m: {"echo": m.payload})
        await wait_until(lambda: bool(replies and source.log), 5, "the reply and the ack")
    assert replies == [{"echo": "q"}]
    assert source.made == ["q"] and source.log == ["ack:q"]


async def test_a_fan_out_handler_that_fails_gets_the_message_again() -> None:
    """The in-memory fan-out queue takes; a failure's delivery nacks it back as attempt 2."""
    attempts: list[tuple[object, int]] = []

    def flaky(message: Message) -> None:
        attempts.append((message.payload, message.attempt))
        if message.attempt == 1 and message.payload == "b":
            raise RuntimeError("once")

    async with MessageBus() as bus:
        await bus.subscribe("t.x", flaky, retry=RetryPolicy(max_attempts=3, initial_delay=0.01))
        for payload in ("a", "b", "c"):
            await bus.publish("t.x", payload)
        await wait_until(lambda: ("b", 2) in attempts, 5, "the retry")
    assert attempts[:3] == [("a", 1), ("b", 1), ("c", 1)]
    assert attempts[3:] == [("b", 2)]


async def test_the_in_memory_subscription_takes_only_first_deliveries_by_reference() -> None:
    hub = MemoryHub()
    plain, wire = MemoryTransport(hub), MemoryTransport(hub, serialize=True)
    await plain.connect()
    await wire.connect()
    fan = await plain.subscribe(SubscriptionSpec("t.y"))
    group = await plain.subscribe(SubscriptionSpec("t.y", group="g"))
    encoded = await wire.subscribe(SubscriptionSpec("t.y"))
    sent = Message("t.y", 1)
    await plain.publish(sent)
    assert fan.take() is sent
    assert group.take() is None and encoded.take() is None, "groups track acks; copies decode"
    assert group.ready() is not None and encoded.ready() is not None
    await plain.publish_raw("t.y", b"{}")
    assert fan.take() is None, "foreign bytes are decoded through ready()"
    raw = fan.ready()
    assert raw is not None and raw.message.payload == {}
    await fan.delivery_of(sent).nack()
    assert fan.take() is None, "a redelivery goes through ready(), which sets its attempt"
    again = fan.ready()
    assert again is not None and again.message.attempt == 2 and again.message.payload == 1
    await fan.aclose()
    await plain.publish(Message("t.y", 2))
    assert fan.take() is None, "a closed subscription takes nothing"
    await plain.aclose()
    await wire.aclose()
