"""A consumer process for the SIGKILL test: joins a JetStream group, says READY, hangs in its handler.

Usage: python _consumer.py URL STREAM_PREFIX TOPIC GROUP
"""

from __future__ import annotations

import asyncio
import sys

from amb_core import MessageBus
from amb_core.message import Message
from amb_nats import NATSTransport


async def main(url: str, prefix: str, topic: str, group: str) -> None:
    transport = NATSTransport.from_url(url, mode="jetstream", stream_prefix=prefix)
    async with MessageBus(transport) as bus:

        async def hang(message: Message) -> None:
            print("STARTED", message.payload, flush=True)
            await asyncio.sleep(3600)

        await bus.subscribe(topic, hang, group=group, ack_wait=1.0)
        print("READY", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
