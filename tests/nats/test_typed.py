"""Typed payloads over a real broker (NATS (core and JetStream)): validation, dead letters with reason
``invalid``, and ``response_type``."""

from __future__ import annotations

import dataclasses

import pydantic
import pytest

from amb_core import Message, MessageBus
from amb_core.deadletter import H_DLQ_REASON
from amb_core.testing.conformance import wait_until

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


class Order(pydantic.BaseModel):
    id: int
    total: float


@dataclasses.dataclass
class Receipt:
    order: int
    paid: bool


@pytest.mark.parametrize("mode", ["core", "jetstream"])
async def test_typed_handlers_over_nats(nats_url: str, stream_prefix: str, mode: str) -> None:
    sep = "&" if "?" in nats_url else "?"
    url = f"{nats_url}{sep}mode={mode}&stream_prefix={stream_prefix}&storage=memory"
    dead: list[Message] = []
    async with MessageBus.from_url(url) as server, MessageBus.from_url(url) as client:

        @server.subscribe("orders.created", group="billing")
        async def bill(order: Order, message: Message) -> Receipt:
            return Receipt(order=order.id, paid=message.sender == "shop")

        await server.subscribe("dlq.orders.>", dead.append)
        client.name = "shop"
        reply = await client.request(
            "orders.created", Order(id=3, total=1.0), timeout=10, response_type=Receipt
        )
        assert reply.payload == Receipt(order=3, paid=True)
        await client.publish("orders.created", {"id": "three"})
        await wait_until(lambda: bool(dead), 10, "the invalid order's dead letter")
    assert dead[0].headers[H_DLQ_REASON] == "invalid"
