"""Typed payloads: handlers that declare a pydantic model, a dataclass or an attrs class get the
payload validated; invalid payloads are dead-lettered at once with reason ``invalid``; instances
are published as plain JSON; ``request(response_type=...)`` validates the reply."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from amb_core import (
    ConfigurationError,
    MemoryHub,
    MemoryTransport,
    Message,
    MessageBus,
    PayloadValidationError,
)
from amb_core.deadletter import H_DLQ_ATTEMPTS, H_DLQ_REASON
from amb_core.testing.conformance import wait_until
from amb_core.typed import plain, signature_types
from tests.typed_cases import Order, Receipt

pytestmark = pytest.mark.anyio


@attrs.define
class Refund:
    order: int
    amount: float


def _wire_pair() -> tuple[MessageBus, MessageBus]:
    """Two buses over a serializing memory hub: payloads cross as JSON, as over a broker."""
    hub = MemoryHub()
    return (
        MessageBus(MemoryTransport(hub, serialize=True)),
        MessageBus(MemoryTransport(hub, serialize=True)),
    )


async def test_each_kind_of_type_is_validated_and_the_message_stays_reachable() -> None:
    server, client = _wire_pair()
    got: list[Any] = []
    async with server, client:

        @server.subscribe("orders.created")
        async def on_order(order: Order, message: Message) -> Receipt:
            got.append((order, message.topic))
            return Receipt(order=order.id, paid=order.total > 0)

        @server.subscribe("refunds.*")
        def on_refund(refund: Refund) -> None:
            got.append(refund)

        @server.subscribe("receipts.*")
        async def on_receipt(receipt: Receipt) -> None:
            got.append(receipt)

        reply = await client.request(
            "orders.created", Order(id=7, total=9.5), timeout=5, response_type=Receipt
        )
        assert reply.payload == Receipt(order=7, paid=True)
        await client.publish("refunds.new", Refund(order=7, amount=2.5))
        await client.publish("receipts.new", {"order": 8, "paid": False})
        await wait_until(lambda: len(got) >= 3, 5, "three typed messages")
    assert got[0] == (Order(id=7, total=9.5), "orders.created")
    assert Refund(order=7, amount=2.5) in got and Receipt(order=8, paid=False) in got


async def test_an_invalid_payload_is_dead_lettered_at_once_and_the_subscription_lives() -> None:
    server, client = _wire_pair()
    calls: list[Order] = []
    dead: list[Message] = []
    async with server, client:

        @server.subscribe("orders.created")
        async def on_order(order: Order) -> None:
            calls.append(order)

        await server.subscribe("dlq.orders.>", dead.append)
        await client.publish("orders.created", {"id": "not a number", "total": 1})
        await client.publish("orders.created", {"id": 2, "total": 1})
        await wait_until(lambda: bool(dead and calls), 5, "the letter and the valid order")
    assert calls == [Order(id=2, total=1)]
    assert dead[0].headers[H_DLQ_REASON] == "invalid"
    assert dead[0].headers[H_DLQ_ATTEMPTS] == "1"
    assert "not a valid Order" in dead[0].headers["amb-dlq-error"]


async def test_a_reply_that_does_not_validate_raises() -> None:
    async with MessageBus() as bus:
        await bus.subscribe("svc.q", lambda m: {"order": "x"})
        with pytest.raises(PayloadValidationError, match="Receipt"):
            await bus.request("svc.q", None, timeout=5, response_type=Receipt)


async def test_typed_streaming_handler() -> None:
    server, client = _wire_pair()
    async with server, client:

        @server.subscribe("orders.lines")
        async def lines(order: Order) -> Any:
            for i in range(order.id):
                yield Refund(order=order.id, amount=float(i))

        got = [c.payload async for c in client.stream("orders.lines", Order(id=3, total=1))]
    assert got == [{"order": 3, "amount": float(i)} for i in range(3)]


def test_signatures_read() -> None:
    def untyped(message):  # type: ignore[no-untyped-def]
        return None

    def plain_message(message: Message) -> None:
        return None

    def typed(order: Order, message: Message) -> Receipt:
        raise NotImplementedError

    assert signature_types(untyped) == (None, False, None)
    assert signature_types(plain_message) == (None, False, None)
    assert signature_types(typed) == (Order, True, Receipt)
    assert signature_types(lambda m: m) == (None, False, None)


async def test_a_handler_taking_object_or_any_gets_the_message() -> None:
    """``object`` and ``Any`` declare no payload type: such a handler gets the Message, with no
    validation step in between."""
    got: list[object] = []

    def anything(message: object) -> None:
        got.append(message)

    def any_message(message: Any) -> None:
        got.append(message)

    assert signature_types(anything) == (None, False, None)
    async with MessageBus(MemoryTransport()) as bus:
        first = await bus.subscribe("things.*", anything)
        second = await bus.subscribe("things.*", any_message)
        assert first.codec is None and second.codec is None
        sent = await bus.publish("things.one", {"n": 1})
        await wait_until(lambda: len(got) == 2, 5, "both handlers called")
    assert all(isinstance(m, Message) and m.id == sent.id for m in got)


def test_plain_turns_instances_into_json_values() -> None:
    assert plain(Order(id=1, total=2.0)) == {"id": 1, "total": 2.0}
    assert plain(Receipt(order=1, paid=True)) == {"order": 1, "paid": True}
    assert plain(Refund(order=1, amount=0.5)) == {"order": 1, "amount": 0.5}
    payload = {"a": 1}
    assert plain(payload) is payload


def test_an_unresolvable_annotation_is_a_clear_error() -> None:
    def handler(order: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    with pytest.raises(ConfigurationError, match="cannot resolve the payload annotation"):
        MessageBus().subscribe("x.y", handler)
