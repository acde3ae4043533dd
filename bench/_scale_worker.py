"""One member of the scale benchmark's consumer group (run as a process of its own):
``python -m bench._scale_worker URL TOPIC GROUP PROGRESS_FILE``. Its handler awaits 5 ms, as an
agent waiting on I/O would; it prints ``ready`` once subscribed (on Kafka, once the group has
given it its partitions: see :func:`_assigned`), keeps its handled count in
PROGRESS_FILE (every 0.1 s, for the driver to see the run end), and on SIGTERM prints one JSON line
with how many messages it handled and when it handled its first and last (epoch seconds)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time

import anyio

from amb_core import Message, MessageBus

WORK_SECONDS = 0.005
PREFETCH = 10
"""Deliveries a member may hold ahead of its handler: small, so that slow handlers spread the
group's work (the default, 100, lets the first member to read take a hundred at once)."""
JOIN_TIMEOUT = 60.0


class _Assigned(logging.Handler):
    """Sets ``event`` when the Kafka transport logs an assignment for ``group`` (it logs each one at
    DEBUG on ``amb.kafka``, from librdkafka's rebalance callback, as the tests read it too)."""

    def __init__(self, group: str) -> None:
        super().__init__(logging.DEBUG)
        self.prefix = f"group {group} assigned"
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            self.event.set()


async def _assigned(handler: _Assigned) -> None:
    """Until this member has its partitions. A Kafka subscription returns before the group has
    formed: the coordinator holds every JoinGroup (Tansu 0.6: for half the session timeout, 3 s at
    the benchmark's 6 s), and a member already in the group hears of a newcomer's rebalance only
    at its next heartbeat. A member that said ``ready`` at subscribe got its partitions 3 to 4.5 s
    later, after the driver's settling pause: publishing had begun and the members started
    handling up to a second apart, which the group's time (first handled message to last)
    counted. A member that joins last gets its assignment in the generation that includes every
    member (a follower's comes when the leader hands the assignments out), so once the last one
    is ready the group is settled."""
    # set on librdkafka's callback thread (or the loop's): waited for in a worker thread
    await anyio.to_thread.run_sync(handler.event.wait, JOIN_TIMEOUT)


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

    joined: _Assigned | None = None
    if url.startswith("kafka"):
        joined = _Assigned(group)
        logger = logging.getLogger("amb.kafka")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(joined)
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async with (
            MessageBus.from_url(url, drain_timeout=2) as bus,
            anyio.create_task_group() as tg,
        ):
            await bus.subscribe(topic, work, group=group, concurrency=1, prefetch=PREFETCH)
            if joined is not None:
                await _assigned(joined)
            tg.start_soon(report)
            print("ready", flush=True)
            async for _ in signals:
                break
            tg.cancel_scope.cancel()
    print(json.dumps({"handled": handled, "first": first, "last": last}), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
