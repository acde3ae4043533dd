"""In-memory pub/sub and request/reply through the bus, beside a bare asyncio.Queue fan-out.

The baseline is what a program without a bus would write (issue 19's definition): one bounded
``asyncio.Queue`` per subscriber (``maxsize`` = the bus's default buffer, 10,000), a publisher that
awaits ``put`` on each, and per subscriber a task that awaits ``get`` and calls a plain handler. The
bus runs the same shape: ``await bus.publish`` per message, one ``bus.subscribe`` per subscriber,
the same plain handler (and, in another row, an ``async def`` one, as most agents write). Cases run
in alternating rounds (a shared machine's load hits each alike); medians are shown. Target: the bus
>= 0.5x the baseline.
"""

from __future__ import annotations

import asyncio
import time

import anyio

from amb_core import InMemoryBroker, Message, MessageBus

from ._report import alternate, percentile, print_table

N = 200_000
ROUNDS = 5
BUFFER = 10_000  # the in-memory transport's default max_buffer
PAYLOAD = {"agent": "planner", "task": "analyze", "data": "x" * 60}  # ~100 bytes as JSON


class _Counter:
    """The plain handler of every case: counts, and sets ``done`` at the last message."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.done = asyncio.Event()

    def __call__(self, message: object) -> None:
        self.left -= 1
        if not self.left:
            self.done.set()


async def queue_fanout(subscribers: int) -> None:
    counter = _Counter(N * subscribers)
    queues: list[asyncio.Queue[object]] = [asyncio.Queue(BUFFER) for _ in range(subscribers)]

    async def consume(queue: asyncio.Queue[object]) -> None:
        handler, get = counter, queue.get
        while True:
            handler(await get())

    tasks = [asyncio.ensure_future(consume(queue)) for queue in queues]
    for _ in range(N):
        for queue in queues:
            await queue.put(PAYLOAD)
    await counter.done.wait()
    for task in tasks:
        task.cancel()


async def bus_fanout(bus: MessageBus, topic: str, subscribers: int, *, plain: bool = True) -> None:
    counter = _Counter(N * subscribers)

    async def async_handler(message: Message) -> None:
        counter(message)

    handler = counter if plain else async_handler
    subs = [await bus.subscribe(topic, handler) for _ in range(subscribers)]
    for _ in range(N):
        await bus.publish(topic, PAYLOAD)
    await counter.done.wait()
    for sub in subs:
        await sub.cancel()


async def request_reply(bus: MessageBus) -> None:
    await bus.subscribe("bench.echo", lambda message: message.payload)
    latencies = []
    for _ in range(2000):
        started = time.perf_counter()
        await bus.request("bench.echo", PAYLOAD, timeout=5)
        latencies.append((time.perf_counter() - started) * 1e6)
    total, in_flight = 20_000, 50
    started = time.perf_counter()

    async def worker() -> None:
        for _ in range(total // in_flight):
            await bus.request("bench.echo", PAYLOAD, timeout=5)

    async with anyio.create_task_group() as tg:
        for _ in range(in_flight):
            tg.start_soon(worker)
    rate = total / (time.perf_counter() - started)
    print("\n## In-memory request/reply through the bus")
    print(
        f"p50 {percentile(latencies, 0.5):.0f} us, p99 {percentile(latencies, 0.99):.0f} us one at a time;"
        f" {rate:,.0f} req/s with {in_flight} in flight"
    )


async def amain() -> None:
    async with (
        MessageBus(InMemoryBroker()) as bus,
        MessageBus(InMemoryBroker(serialize=True)) as wire,
    ):
        for subscribers in (1, 4):
            cases = {
                f"asyncio.Queue fan-out, {subscribers} sub (baseline)": (
                    N,
                    lambda s=subscribers: queue_fanout(s),
                ),
                "MessageBus, plain handler": (N, lambda s=subscribers: bus_fanout(bus, "b.p", s)),
                "MessageBus, async def handler": (
                    N,
                    lambda s=subscribers: bus_fanout(bus, "b.a", s, plain=False),
                ),
                "MessageBus, serialize=True, plain handler": (
                    N,
                    lambda s=subscribers: bus_fanout(wire, "b.w", s),
                ),
            }
            figures = await alternate(cases, ROUNDS)
            print_table(
                f"In-memory pub/sub, {N:,} messages to {subscribers} subscriber(s) "
                f"(msg/s: messages published), median of {ROUNDS} alternating rounds",
                figures,
                figures[0],
            )
        print("target: the bus >= 0.5x the asyncio.Queue fan-out")
    async with MessageBus(InMemoryBroker()) as bus:
        await request_reply(bus)


def main() -> None:
    asyncio.run(amain())


if __name__ == "__main__":
    main()
