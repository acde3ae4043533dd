"""Cases more than one benchmark measures the same way."""

from __future__ import annotations

import asyncio
from typing import Any

from amb_core import Message, MessageBus

__all__ = ["bus_pubsub"]


async def bus_pubsub(
    bus: MessageBus, topic: str, count: int, payload: Any, *, plain_handler: bool = False
) -> None:
    """Publish ``count`` copies of ``payload`` to ``topic`` and wait until one subscriber has
    handled them all; its handler is an ``async def`` (as most agents') or, with
    ``plain_handler``, a plain function."""
    seen = 0
    done = asyncio.get_running_loop().create_future()

    def count_one(message: Message) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            done.set_result(None)

    async def handler(message: Message) -> None:
        count_one(message)

    subscriber = await bus.subscribe(topic, count_one if plain_handler else handler)
    for i in range(count):
        await bus.publish(topic, payload)
        if i % 5000 == 0:
            await asyncio.sleep(0)
    await done
    await subscriber.cancel()
