"""Streamed replies and scatter-gather through the bus, each beside a baseline in the same run.

* Memory: chunks/s of ``bus.stream`` (an async generator responder, windows 16 and 64) beside the
  same bus's own in-memory pub/sub rate for the same number of messages (target: stream >= 0.5x).
* NATS (core): chunks/s of ``bus.stream`` beside raw nats-py doing the same protocol by hand: a
  responder publishes numbered chunk frames to the requester's inbox subject and waits for a credit
  message every half window, so at most ``window`` chunks are unacknowledged (target >= 0.5x).
* Gather over 10 responders (memory and NATS): p50 of ``await bus.gather(..., max_replies=10)``
  beside 10 sequential ``bus.request`` calls to the same 10 responders, and 10 concurrent ones.

Cases are run in alternating rounds (a shared machine's load hits each alike); medians are shown.
The NATS server is ``AMB_NATS_URL``, else 127.0.0.1:4222, else a throwaway ``nats-server``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

from amb_core import Message, MessageBus
from bench._cases import bus_pubsub

from ._report import alternate, percentile, print_table

CHUNKS = 20_000
NATS_CHUNKS = 20_000
WINDOWS = (16, 64)
ROUNDS = 3
CHUNK = {"token": "hello"}  # a small chunk, as a language model's token stream sends
RESPONDERS = 10
GATHERS = 300


# -- the bus: pub/sub, stream, gather -------------------------------------------------------------


async def chunks(message: Message) -> AsyncGenerator[Any, None]:
    """The streaming responder: ``payload["n"]`` small chunks."""
    for _ in range(message.payload["n"]):
        yield CHUNK


async def bus_stream(bus: MessageBus, topic: str, count: int, window: int) -> None:
    seen = 0
    async with bus.stream(topic, {"n": count}, window=window, timeout=120) as stream:
        async for _ in stream:
            seen += 1
    assert seen == count, (seen, count)


async def gather_latencies(
    client: MessageBus, server: MessageBus, prefix: str
) -> dict[str, list[float]]:
    """p50 inputs for gather over ``RESPONDERS`` responders, and for 10 sequential / concurrent
    requests to the same responders (each also listens on a topic of its own)."""
    for i in range(RESPONDERS):

        def answer(message: Message, i: int = i) -> Any:
            return {"agent": i, "echo": message.payload}

        await server.subscribe(f"{prefix}.all", answer)  # fan-out: every responder hears it
        await server.subscribe(f"{prefix}.agent{i}", answer)
    topics = [f"{prefix}.agent{i}" for i in range(RESPONDERS)]
    payload = {"task": "rank", "data": "x" * 60}

    async def gather() -> None:
        replies = await client.gather(f"{prefix}.all", payload, timeout=5, max_replies=RESPONDERS)
        assert len(replies) == RESPONDERS, len(replies)

    async def sequential() -> None:
        for topic in topics:
            await client.request(topic, payload, timeout=5)

    async def concurrent() -> None:
        await asyncio.gather(*(client.request(topic, payload, timeout=5) for topic in topics))

    cases = {"gather": gather, "sequential": sequential, "concurrent": concurrent}
    for case in cases.values():  # warm up: inboxes, subscriptions, the broker's interest
        for _ in range(20):
            await case()
    latencies: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, case in cases.items():
            for _ in range(GATHERS // ROUNDS):
                started = time.perf_counter()
                await case()
                latencies[name].append((time.perf_counter() - started) * 1e6)
    return latencies


def print_gather(title: str, latencies: dict[str, list[float]]) -> None:
    print(f"\n## {title}")
    print(f"{'case':48} {'p50 us':>10} {'p99 us':>10} {'ratio p50':>10}")
    names = {
        "gather": f"await bus.gather(max_replies={RESPONDERS})",
        "sequential": f"{RESPONDERS} sequential bus.request",
        "concurrent": f"{RESPONDERS} concurrent bus.request",
    }
    base = percentile(latencies["sequential"], 0.5)
    for key, name in names.items():
        p50 = percentile(latencies[key], 0.5)
        p99 = percentile(latencies[key], 0.99)
        print(f"{name:48} {p50:10.0f} {p99:10.0f} {p50 / base:9.2f}x")


async def memory() -> None:
    async with MessageBus() as bus:
        await bus.subscribe("bench.stream", chunks)
        await bus_stream(bus, "bench.stream", 1000, 16)  # warm up
        cases: dict[str, tuple[int, Any]] = {
            "MessageBus() pub/sub (baseline)": (
                CHUNKS,
                lambda: bus_pubsub(bus, "bench.pubsub", CHUNKS, CHUNK, plain_handler=True),
            ),
        }
        for window in WINDOWS:
            cases[f"bus.stream, window {window}"] = (
                CHUNKS,
                lambda window=window: bus_stream(bus, "bench.stream", CHUNKS, window),
            )
        figures = await alternate(cases, ROUNDS)
    print_table(
        f"In-memory stream, {CHUNKS:,} chunks (chunks/s in the msg/s column), "
        f"median of {ROUNDS} alternating rounds",
        figures,
        figures[0],
    )
    print("target: stream >= 0.5x the bus's own pub/sub")
    async with MessageBus() as bus:
        latencies = await gather_latencies(bus, bus, "bench.gather")
    print_gather(
        f"In-memory gather over {RESPONDERS} responders ({GATHERS} each, alternating)", latencies
    )


# -- NATS: raw nats-py doing the stream protocol by hand ------------------------------------------


async def raw_stream_responder(nc: Any, subject: str) -> Any:
    """Answers a request ``{"n": chunks, "window": w}`` with ``n`` frames (header ``seq``) to its
    reply subject, then an end frame; at most ``w`` frames beyond the last credit, which comes to
    a credit inbox of its own (named as each frame's reply subject)."""
    dumps, loads = json.dumps, json.loads

    async def serve(request: Any) -> None:
        asked = loads(request.data)
        count, window = asked["n"], asked["window"]
        credit_inbox = nc.new_inbox()
        acked = 0
        wake = asyncio.Event()

        async def on_credit(msg: Any) -> None:
            nonlocal acked
            seq = int(msg.headers["seq"])
            if seq > acked:
                acked = seq
                wake.set()

        credit_sub = await nc.subscribe(credit_inbox, cb=on_credit)
        try:
            for seq in range(1, count + 1):
                while seq > acked + window:
                    wake.clear()
                    await wake.wait()
                await nc.publish(
                    request.reply,
                    dumps(CHUNK).encode(),
                    reply=credit_inbox,
                    headers={"seq": str(seq)},
                )
            await nc.publish(
                request.reply, b"null", headers={"seq": str(count + 1), "end": str(count)}
            )
        finally:
            await credit_sub.unsubscribe()

    tasks: set[asyncio.Task[None]] = set()

    async def on_request(request: Any) -> None:
        task = asyncio.ensure_future(serve(request))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    sub = await nc.subscribe(subject, cb=on_request)
    await nc.flush()
    return sub


async def raw_stream(nc: Any, subject: str, count: int, window: int) -> None:
    """The requester: in-order frames (early ones held, duplicates dropped, as the bus does), a
    credit every half window of chunks taken."""
    loads = json.loads
    inbox = nc.new_inbox()
    done = asyncio.get_running_loop().create_future()
    held: dict[int, Any] = {}
    state = {"next": 1, "acked": 0}
    half = max(1, window // 2)

    async def on_frame(msg: Any) -> None:
        seq = int(msg.headers["seq"])
        if seq >= state["next"]:
            held.setdefault(seq, msg)
        while state["next"] in held:
            frame = held.pop(state["next"])
            if "end" in frame.headers:
                done.set_result(state["next"] - 1)
                return
            loads(frame.data)
            taken = state["next"]
            state["next"] += 1
            if taken - state["acked"] >= half:
                state["acked"] = taken
                await nc.publish(frame.reply, b"", headers={"seq": str(taken)})

    sub = await nc.subscribe(inbox, cb=on_frame)
    await nc.publish(subject, json.dumps({"n": count, "window": window}).encode(), reply=inbox)
    try:
        seen = await asyncio.wait_for(done, 120)
    finally:
        await sub.unsubscribe()
    assert seen == count, (seen, count)


async def nats() -> None:
    import nats as nats_py

    from .bench_nats import _server_url

    url, server = _server_url()
    try:
        requester = await nats_py.connect(url)
        responder = await nats_py.connect(url)
        await raw_stream_responder(responder, "bench.raw.stream")
        async with MessageBus.from_url(url) as server_bus, MessageBus.from_url(url) as client:
            await server_bus.subscribe("bench.bus.stream", chunks)
            await bus_stream(client, "bench.bus.stream", 1000, 16)  # warm up
            await raw_stream(requester, "bench.raw.stream", 1000, 16)
            for window in WINDOWS:
                raw, bus = await alternate(
                    {
                        f"raw nats-py frames + credit, window {window}": (
                            NATS_CHUNKS,
                            functools.partial(
                                raw_stream, requester, "bench.raw.stream", NATS_CHUNKS, window
                            ),
                        ),
                        f"bus.stream over NATS (core), window {window}": (
                            NATS_CHUNKS,
                            functools.partial(
                                bus_stream, client, "bench.bus.stream", NATS_CHUNKS, window
                            ),
                        ),
                    },
                    ROUNDS,
                )
                print_table(
                    f"NATS stream, {NATS_CHUNKS:,} chunks, window {window} (chunks/s in the "
                    f"msg/s column), median of {ROUNDS} alternating rounds",
                    [raw, bus],
                    raw,
                )
            print("target: bus.stream >= 0.5x raw nats-py")
            latencies = await gather_latencies(client, server_bus, "bench.gather")
        print_gather(
            f"NATS gather over {RESPONDERS} responders ({GATHERS} each, alternating)", latencies
        )
        await requester.close()
        await responder.close()
    finally:
        if server is not None:
            server.close()


async def amain() -> None:
    await memory()
    try:
        import amb_nats  # noqa: F401
    except ImportError as exc:
        print(f"\n# NATS conversations: skipped ({exc})")
        return
    await nats()


def main() -> None:
    asyncio.run(amain())


if __name__ == "__main__":
    main()
