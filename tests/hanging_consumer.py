"""A consumer process for the SIGKILL tests of every backend: it joins a group on the broker at a
URL, says READY, and hangs in its handler (after printing STARTED and the payload) until killed.

The program runs with ``python -c`` rather than as a file here, because a script's folder goes
first on ``sys.path`` and ``tests/redis`` would then shadow the ``redis`` driver.
"""

from __future__ import annotations

import subprocess
import sys

_PROGRAM = """
import sys
import anyio
from amb_core import MessageBus

url, topic, group = sys.argv[1:4]

async def main():
    async with MessageBus.from_url(url) as bus:

        async def hang(message):
            print("STARTED", message.payload, flush=True)
            await anyio.sleep_forever()

        await bus.subscribe(topic, hang, group=group, ack_wait=1.0)
        print("READY", flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


def spawn(url: str, topic: str, group: str) -> subprocess.Popen[str]:
    """Start the consumer (the URL carries the backend's options, e.g. ``?namespace=...`` or
    ``?mode=jetstream``); read READY from its stdout before publishing to it."""
    return subprocess.Popen(
        [sys.executable, "-c", _PROGRAM, url, topic, group],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
