"""One member of the scale benchmark's consumer group (run as a process of its own):
``python -m bench._scale_worker URL TOPIC GROUP PROGRESS_FILE``. Its handler awaits 5 ms, as an
agent waiting on I/O would; it prints ``ready`` once subscribed, keeps its handled count in
PROGRESS_FILE (every 0.1 s, for the driver to see the run end), and on SIGTERM prints one JSON line
with how many messages it handled and when it handled its first and last (epoch seconds)."""

from __future__ import annotations

import json
import signal
import sys
import time

import anyio

from amb_core import Message, MessageBus

WORK_SECONDS = 0.005
PREFETCH = 10
"""Deliveries a member may hold ahead of its handler: small, so that slow handlers spread the
group's work (the default, 100, lets the first member to read take a hundred at once)."""


async def main(url: str, topic: str, group: str, progress: str) -> None:
    handled = 0
    first = last = 0.0

    async def work(message: Message) -> None:
        nonlocal handled, first, last
        await anyio.sleep(WORK_SECONDS)
        now = time.time()
        first = first or now
        last = now
        handled += 1

    async def report() -> None:
        path = anyio.Path(progress)
        while True:
            await path.write_text(str(handled))
            await anyio.sleep(0.1)

    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async with (
            MessageBus.from_url(url, drain_timeout=2) as bus,
            anyio.create_task_group() as tg,
        ):
            await bus.subscribe(topic, work, group=group, concurrency=1, prefetch=PREFETCH)
            tg.start_soon(report)
            print("ready", flush=True)
            async for _ in signals:
                break
            tg.cancel_scope.cancel()
    print(json.dumps({"handled": handled, "first": first, "last": last}), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
