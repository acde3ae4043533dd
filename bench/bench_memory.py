"""In-memory pub/sub and request/reply through the bus, beside a plain asyncio.Queue baseline."""

from __future__ import annotations

import asyncio
import time

import anyio

from amb_core import InMemoryBroker, Message, MessageBus

from ._report import measure, percentile, print_table

N = 200_000
PAYLOAD = {"agent": "planner", "task": "analyze", "data": "x" * 60}  # ~100 bytes as JSON


async def queue_baseline() -> None:
    queue: asyncio.Queue[object] = asyncio.Queue()
    done = asyncio.Event()

    async def consume() -> None:
        for _ in range(N):
            await queue.get()
        done.set()

    task = asyncio.ensure_future(consume())
    for _ in range(N):
        queue.put_nowait(PAYLOAD)
        if queue.qsize() >= 10_000:
            await asyncio.sleep(0)
    await done.wait()
    await task


async def bus_pubsub(bus: MessageBus, topic: str) -> None:
    count = 0
    done = anyio.Event()

    async def handler(message: Message) -> None:
        nonlocal count
        count += 1
        if count == N:
            done.set()

    subscriber = await bus.subscribe(topic, handler)
    for _ in range(N):
        await bus.publish(topic, PAYLOAD)
    await done.wait()
    await subscriber.cancel()


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
    baseline = await measure("asyncio.Queue (baseline, no bus)", N, queue_baseline)
    async with MessageBus(InMemoryBroker()) as bus:
        figure = await measure(
            "MessageBus over InMemoryBroker", N, lambda: bus_pubsub(bus, "bench.pubsub")
        )
    async with MessageBus(InMemoryBroker(serialize=True)) as bus:
        wire = await measure(
            "MessageBus over InMemoryBroker(serialize=True)",
            N,
            lambda: bus_pubsub(bus, "bench.wire"),
        )
    print_table(
        f"In-memory pub/sub, {N:,} messages, one subscriber, median of 3",
        [baseline, figure, wire],
        baseline,
    )
    async with MessageBus(InMemoryBroker()) as bus:
        await request_reply(bus)


def main() -> None:
    asyncio.run(amain())


if __name__ == "__main__":
    main()
