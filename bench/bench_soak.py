"""Memory soak: pub/sub, requests and subscription churn in rounds; traced memory must stay flat.

``python -m bench soak`` (default 60 s; ``AMB_SOAK_SECONDS=600`` for the 10-minute soak of
PERFORMANCE.md). Prints the traced memory after each round and the growth from the second round
(after caches warm up) to the last, per message, per request and per subscription.
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc

import anyio

from amb_core import InMemoryBroker, Message, MessageBus

MESSAGES, REQUESTS, CHURN = 20_000, 2_000, 200


async def one_round(bus: MessageBus, round_no: int) -> None:
    count = 0
    done = anyio.Event()

    async def handler(message: Message) -> None:
        nonlocal count
        count += 1
        if count == MESSAGES:
            done.set()

    subscriber = await bus.subscribe("soak.pub.*", handler)
    for i in range(MESSAGES):
        await bus.publish(f"soak.pub.t{i % 50}", {"i": i, "round": round_no})
    await done.wait()
    await subscriber.cancel()
    for i in range(REQUESTS):
        await bus.request("soak.echo", i, timeout=5)
    for _ in range(CHURN):
        churn = await bus.subscribe("soak.churn.>", print, group="churners")
        await churn.cancel()


async def amain() -> None:
    seconds = float(os.environ.get("AMB_SOAK_SECONDS", "60"))
    tracemalloc.start()
    sizes: list[int] = []
    async with MessageBus(InMemoryBroker()) as bus:
        bus.transport.hub.retained = type(bus.transport.hub.retained)(maxlen=1000)  # type: ignore[attr-defined]
        await bus.subscribe("soak.echo", lambda m: m.payload)
        deadline = time.monotonic() + seconds
        round_no = 0
        while time.monotonic() < deadline or round_no < 3:
            round_no += 1
            await one_round(bus, round_no)
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
            print(f"round {round_no:3}: traced {sizes[-1] / 1024:9.1f} KiB")
    growth = sizes[-1] - sizes[1]
    rounds = len(sizes) - 2
    print(
        f"\n## Soak, {round_no} rounds in {seconds:g}s: growth from round 2 to {round_no}: {growth / 1024:.1f} KiB"
    )
    if rounds:
        print(
            f"per message {growth / (rounds * MESSAGES):.3f} B, per request {growth / (rounds * REQUESTS):.3f} B,"
            f" per subscription {growth / (rounds * CHURN):.3f} B"
        )


def main() -> None:
    anyio.run(amain)


if __name__ == "__main__":
    main()
