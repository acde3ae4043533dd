"""Typed payloads over a real broker, shared by the backends' test folders: validation, the
Message beside the typed value, dead letters with reason ``invalid``, and ``response_type``."""

from __future__ import annotations

import dataclasses

import pydantic

from amb_core import Message, MessageBus
from amb_core.deadletter import H_DLQ_REASON
from amb_core.testing.conformance import wait_until


class Order(pydantic.BaseModel):
    id: int
    total: float


@dataclasses.dataclass
class Receipt:
    order: int
    paid: bool


async def check_typed_handlers(url: str) -> None:
    """A typed request answered with a typed reply; an invalid payload dead-lettered."""
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
