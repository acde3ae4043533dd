"""A TCP proxy that delays every request on its way to the endpoint: a slow endpoint, for real.

moto under load (the fault soak's publishers) answers in seconds, not milliseconds; on a quiet test
machine it answers at once, which hides any timing that only holds while requests are fast. The
proxy forwards bytes unchanged, each chunk from the client held back ``delay`` seconds (latency,
not a bandwidth cap: chunks keep their order and do not wait for each other), the answers straight
back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["slow_endpoint"]


async def _delayed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await chunks.get()
            if not data:
                writer.close()
                return
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(data)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        while data := await reader.read(65536):
            chunks.put_nowait((loop.time() + delay, data))
        chunks.put_nowait((loop.time() + delay, b""))
        await sender
    finally:
        sender.cancel()


async def _straight(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def slow_endpoint(port: int, delay: float) -> AsyncIterator[int]:
    """Listen on a free loopback port (yielded) and forward to ``127.0.0.1:port``, each request
    ``delay`` seconds late."""
    tasks: set[asyncio.Task[None]] = set()

    async def connection(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
        pumps = (_delayed(client_r, server_w, delay), _straight(server_r, client_w))
        task = asyncio.ensure_future(asyncio.gather(*pumps, return_exceptions=True))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
