"""Where the lost messages are: still on the broker, or gone from it.

When a run ends with messages neither handled nor dead-lettered, a fresh group reads the topic
again from its start (on transports that can replay) and counts how many of the lost numbers the
broker still stores. Found there, they were skipped by the consumer side (a position committed or
acknowledged past them); not found, the broker no longer has what it acknowledged.
"""

from __future__ import annotations

import time
import uuid

import anyio

from amb_core import Message, MessageBus

__all__ = ["stored"]


async def stored(
    bus: MessageBus, topic: str, numbers: set[int], *, idle: float = 10.0, limit: float = 300.0
) -> tuple[int, int] | None:
    """How many of ``numbers`` a replay of ``topic`` from the earliest finds, and how many messages
    it read in all (none read: the replay itself failed, so it says nothing); None without replay.

    Reading stops once all are found, after ``idle`` seconds without a message (a minute before the
    first one: a group join on Tansu takes seconds), or after ``limit``.
    """
    if not bus.transport.capabilities.replay:
        return None
    found: set[int] = set()
    last = time.monotonic() + 60.0 - idle
    read = 0

    def look(message: Message) -> None:
        nonlocal last, read
        last = time.monotonic()
        read += 1
        body = message.payload
        if isinstance(body, dict) and body.get("i") in numbers:
            found.add(body["i"])

    group = f"soak-audit-{uuid.uuid4().hex[:8]}"
    subscriber = await bus.subscribe(topic, look, group=group, start="earliest")
    began = time.monotonic()
    try:
        while len(found) < len(numbers) and time.monotonic() - began < limit:
            if time.monotonic() - last > idle:
                break
            await anyio.sleep(0.25)
    finally:
        await bus.unsubscribe(subscriber)
    return len(found), read
