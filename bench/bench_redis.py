"""Redis: the bus beside hand-written redis-py loops with the same guarantees, in one run.

Cases (100-byte JSON messages, publisher and subscriber in one process, every message counted,
median of 3):

- pub/sub: raw PUBLISH one awaited at a time (the target's baseline), raw with 50 concurrent
  publishers, raw pipelined 100 at a time; the bus one at a time and with 50 concurrent publishers
  (which the transport batches into pipelines).
- Streams: a raw loop with the bus's guarantees (XADD MAXLEN ~ awaited per message; a consumer
  group read of up to 100 entries, each decoded and handled, then XACKed) beside the bus.
- request/reply: p50/p99 one at a time and req/s with 50 in flight, over pub/sub and over Streams,
  beside raw redis-py with one long-lived reply channel.

``AMB_REDIS_URL`` chooses the server (default: 127.0.0.1:6379 when it answers, else a throwaway
redis-server); ``AMB_BENCH_N`` the message count. Keys live under a fresh namespace, deleted at the
end.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from amb_core import Message, MessageBus
from amb_core.testing.servers import ServerProcess, find_binary
from amb_redis import RedisTransport

from ._report import Figure, measure, percentile, print_table


async def _close_pubsub(pubsub: Any) -> None:
    """``PubSub.aclose()``: untyped in some redis-py releases, typed in others, so called through
    ``Any`` (an ignore comment would be "unused" on one of them)."""
    await pubsub.aclose()


N = int(os.environ.get("AMB_BENCH_N", "20000"))
PAYLOAD = {"agent": "planner", "task": "analyze", "data": "x" * 60}  # ~100 bytes as JSON
BODY = json.dumps(PAYLOAD).encode()
CONCURRENT = 50
RR_ROUNDS = 3


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def server_url() -> tuple[str, ServerProcess | None]:
    url = os.environ.get("AMB_REDIS_URL")
    if url:
        return url, None
    if _ping(6379):
        return "redis://127.0.0.1:6379", None
    binary = find_binary("redis-server")
    if binary is None:
        raise SystemExit("no Redis: set AMB_REDIS_URL or install redis-server")
    argv = [binary, "--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = ServerProcess([*argv, "--dir", "{dir}"], _ping, name="redis").start()
    return f"redis://127.0.0.1:{server.port}", server


async def _publish_concurrently(publish: Any, count: int) -> None:
    async def worker(share: int) -> None:
        for _ in range(share):
            await publish()

    await asyncio.gather(*(worker(count // CONCURRENT) for _ in range(CONCURRENT)))


# -- pub/sub -------------------------------------------------------------------------------------


async def raw_pubsub(url: str, channel: str, mode: str) -> None:
    client = aioredis.Redis.from_url(url, max_connections=200, protocol=2)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    done = asyncio.Event()

    async def consume() -> None:
        count = 0
        while count < N:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None and message["type"] == "message":
                json.loads(message["data"])
                count += 1
        done.set()

    reader = asyncio.ensure_future(consume())
    if mode == "awaited":
        for _ in range(N):
            await client.publish(channel, BODY)
    elif mode == "concurrent":
        await _publish_concurrently(lambda: client.publish(channel, BODY), N)
    else:
        for _ in range(N // 100):
            pipe = client.pipeline(transaction=False)
            for _ in range(100):
                pipe.publish(channel, BODY)
            await pipe.execute()
    await done.wait()
    await reader
    await _close_pubsub(pubsub)
    await client.aclose()


async def bus_run(bus: MessageBus, topic: str, concurrent: bool, group: str | None = None) -> None:
    count = 0
    done = asyncio.Event()

    async def handler(message: Message) -> None:
        nonlocal count
        count += 1
        if count == N:
            done.set()

    subscriber = await bus.subscribe(topic, handler, group=group)
    if concurrent:
        await _publish_concurrently(lambda: bus.publish(topic, PAYLOAD), N)
    else:
        for _ in range(N):
            await bus.publish(topic, PAYLOAD)
    await done.wait()
    await subscriber.cancel()


# -- streams -------------------------------------------------------------------------------------


async def raw_streams(url: str, key: str, concurrent: bool) -> None:
    client = aioredis.Redis.from_url(url, max_connections=200, protocol=2)
    group = f"g{uuid.uuid4().hex[:8]}"
    await client.xgroup_create(key, group, id="$", mkstream=True)
    done = asyncio.Event()

    async def consume() -> None:
        count = 0
        while count < N:
            result: Any = await client.xreadgroup(group, "c1", {key: ">"}, count=100, block=1000)
            for _, entries in result or ():
                ids = []
                for entry_id, fields in entries:
                    json.loads(fields[b"body"])
                    ids.append(entry_id)
                    count += 1
                await client.xack(key, group, *ids)
        done.set()

    async def add() -> None:
        await client.xadd(key, {"body": BODY, "amb-id": "x"}, maxlen=100_000, approximate=True)

    reader = asyncio.ensure_future(consume())
    if concurrent:
        await _publish_concurrently(add, N)
    else:
        for _ in range(N):
            await add()
    await done.wait()
    await reader
    await client.xgroup_destroy(key, group)
    await client.aclose()


# -- request/reply -------------------------------------------------------------------------------


async def timed_requests(ask: Any, label: str) -> tuple[str, float, float, float]:
    for _ in range(200):
        await ask()
    latencies = []
    for _ in range(2000):
        started = time.perf_counter()
        await ask()
        latencies.append((time.perf_counter() - started) * 1e6)
    total = 10_000
    started = time.perf_counter()
    await _publish_concurrently(ask, total)
    rate = total / (time.perf_counter() - started)
    return label, percentile(latencies, 0.5), percentile(latencies, 0.99), rate


async def raw_request_reply(url: str, namespace: str) -> tuple[str, float, float, float]:
    client = aioredis.Redis.from_url(url, max_connections=200, protocol=2)
    server_ps = client.pubsub(ignore_subscribe_messages=True)
    inbox_ps = client.pubsub(ignore_subscribe_messages=True)
    service, inbox = f"{namespace}:raw.echo", f"{namespace}:raw.inbox"
    await server_ps.subscribe(service)
    await inbox_ps.subscribe(inbox)
    waiting: dict[str, asyncio.Future[bytes]] = {}

    async def serve() -> None:
        while True:
            message = await server_ps.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                request = json.loads(message["data"])
                await client.publish(request["reply_to"], json.dumps(request).encode())

    async def replies() -> None:
        while True:
            message = await inbox_ps.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                reply = json.loads(message["data"])
                future = waiting.pop(reply["id"], None)
                if future is not None and not future.done():
                    future.set_result(message["data"])

    tasks = [asyncio.ensure_future(serve()), asyncio.ensure_future(replies())]
    await asyncio.sleep(0.1)

    async def ask() -> None:
        ident = uuid.uuid4().hex
        future = waiting[ident] = asyncio.get_running_loop().create_future()
        await client.publish(service, json.dumps({"id": ident, "reply_to": inbox, **PAYLOAD}))
        await asyncio.wait_for(future, 5)

    try:
        return await timed_requests(ask, "raw redis-py, one long-lived reply channel")
    finally:
        for task in tasks:
            task.cancel()
        await _close_pubsub(server_ps)
        await _close_pubsub(inbox_ps)
        await client.aclose()


async def bus_request_reply(
    url: str, mode: str, concurrency: int | None = None
) -> tuple[str, float, float, float]:
    """The responder in the same process; ``concurrency=None`` is the subscription's default
    (one handler at a time, as the raw responder)."""
    async with (
        MessageBus(RedisTransport(url, mode=mode)) as server,
        MessageBus(RedisTransport(url, mode=mode)) as client,
    ):
        await server.subscribe(
            "bench.echo", lambda message: message.payload, concurrency=concurrency
        )
        await server.publish("bench.warmup", None)
        setting = "default settings" if concurrency is None else f"concurrency={concurrency}"
        return await timed_requests(
            lambda: client.request("bench.echo", PAYLOAD, timeout=5),
            f"MessageBus, {mode}, {setting}",
        )


RESPONDER = """
import asyncio, sys
from amb_core import MessageBus
from amb_redis import RedisTransport

async def main():
    async with MessageBus(RedisTransport(sys.argv[1])) as bus:
        await bus.subscribe("bench.echo2", lambda message: message.payload, concurrency=64)
        await bus.publish("bench.warmup", None)
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


async def bus_request_reply_two_processes(url: str, mode: str) -> tuple[str, float, float, float]:
    """The responder in a process of its own, as agents are deployed."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RESPONDER,
        url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"READY", line
        async with MessageBus(RedisTransport(url, mode=mode)) as client:
            return await timed_requests(
                lambda: client.request("bench.echo2", PAYLOAD, timeout=5),
                f"MessageBus, {mode}, responder in another process",
            )
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 10)
        except asyncio.TimeoutError:
            child.kill()
            await child.wait()


# -- main ----------------------------------------------------------------------------------------


async def amain(url: str, namespace: str) -> None:
    ns_url = f"{url}{'&' if '?' in url else '?'}namespace={namespace}"
    pubsub_url = f"{ns_url}&mode=pubsub"
    streams_url = f"{ns_url}&mode=streams"
    channel = f"{namespace}:raw.pubsub"
    raw = await measure(
        "raw PUBLISH, one awaited at a time", N, lambda: raw_pubsub(url, channel, "awaited")
    )
    figures: list[Figure] = [raw]
    figures.append(
        await measure(
            f"raw PUBLISH, {CONCURRENT} concurrent publishers",
            N,
            lambda: raw_pubsub(url, channel, "concurrent"),
        )
    )
    figures.append(
        await measure(
            "raw PUBLISH, pipelined 100 at a time", N, lambda: raw_pubsub(url, channel, "pipelined")
        )
    )
    async with MessageBus(RedisTransport(pubsub_url)) as bus:
        figures.append(
            await measure(
                "bus pub/sub, one awaited at a time", N, lambda: bus_run(bus, "b.ps1", False)
            )
        )
        figures.append(
            await measure(
                f"bus pub/sub, {CONCURRENT} concurrent publishers",
                N,
                lambda: bus_run(bus, "b.ps2", True),
            )
        )
    print_table(
        f"Redis pub/sub, {N:,} messages, one subscriber (ratio: vs raw awaited)", figures, raw
    )

    key = f"{namespace}:raw.stream"
    raw_s = await measure(
        "raw XADD awaited + XREADGROUP/XACK", N, lambda: raw_streams(url, key, False)
    )
    figures = [raw_s]
    async with MessageBus(RedisTransport(streams_url)) as bus:
        figures.append(
            await measure(
                "bus Streams, one awaited at a time", N, lambda: bus_run(bus, "b.st1", False)
            )
        )
        raw_c = await measure(
            f"raw XADD, {CONCURRENT} concurrent + XREADGROUP/XACK",
            N,
            lambda: raw_streams(url, key, True),
        )
        figures.append(raw_c)
        figures.append(
            await measure(
                f"bus Streams, {CONCURRENT} concurrent publishers",
                N,
                lambda: bus_run(bus, "b.st2", True),
            )
        )
        figures.append(
            await measure(
                f"bus Streams, group, {CONCURRENT} concurrent",
                N,
                lambda: bus_run(bus, "b.st3", True, "workers"),
            )
        )
    print_table(
        f"Redis Streams, {N:,} messages, one subscriber (ratio: vs raw awaited)", figures, raw_s
    )

    rows = []
    for _ in range(RR_ROUNDS):  # alternating rounds: a shared machine's load hits each alike
        rows.append(await raw_request_reply(url, namespace))
        rows.append(await bus_request_reply(pubsub_url, "pubsub"))
        rows.append(await bus_request_reply(pubsub_url, "pubsub", concurrency=64))
        rows.append(await bus_request_reply(streams_url, "streams", concurrency=64))
    rows = _medians(rows)
    rows.append(await bus_request_reply_two_processes(pubsub_url, "pubsub"))
    raw_rate = rows[0][3]
    print(
        f"\n## Redis request/reply (p50/p99 one at a time; req/s with {CONCURRENT} in flight; "
        f"median of {RR_ROUNDS} alternating rounds but the last row)"
    )
    print(f"{'case':58} {'p50 us':>8} {'p99 us':>8} {'req/s':>10} {'ratio':>7}")
    for label, p50, p99, rate in rows:
        print(f"{label:58} {p50:8.0f} {p99:8.0f} {rate:10,.0f} {rate / raw_rate:6.2f}x")
    print("target: the bus with default settings >= 1.0x raw at 50 in flight")


def _medians(rows: list[tuple[str, float, float, float]]) -> list[tuple[str, float, float, float]]:
    """Per case (in first-seen order), the median of each column over its rounds."""
    cases: dict[str, list[tuple[str, float, float, float]]] = {}
    for row in rows:
        cases.setdefault(row[0], []).append(row)
    out = []
    for label, runs in cases.items():
        columns = [sorted(float(run[i]) for run in runs)[len(runs) // 2] for i in (1, 2, 3)]
        out.append((label, columns[0], columns[1], columns[2]))
    return out


async def cleanup(url: str, namespace: str) -> None:
    client = aioredis.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def main() -> None:
    url, server = server_url()
    namespace = f"ambbench{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(amain(url, namespace))
    finally:
        asyncio.run(cleanup(url, namespace))
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
