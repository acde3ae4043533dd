"""``Transport.publish_now``: the bus's synchronous publish, and when it must not be used."""

from __future__ import annotations

import anyio
import pytest

from amb_core import Message, MessageBus
from amb_core.memory import MemoryHub, MemoryTransport
from amb_core.middleware import Middleware

pytestmark = pytest.mark.anyio


class _Counting(MemoryTransport):
    """Overrides ``publish`` only, as a subclass that checks each message would."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    async def publish(self, message: Message) -> None:
        self.seen.append(message.id)
        await super().publish(message)


async def test_a_subclass_that_overrides_publish_is_never_bypassed() -> None:
    transport = _Counting()
    async with MessageBus(transport) as bus:
        sent = [await bus.publish("t.x", i) for i in range(3)]
    assert transport.seen == [m.id for m in sent]


async def test_publish_middleware_sees_every_message() -> None:
    seen: list[object] = []

    class Watch(Middleware):
        async def on_publish(self, message, send):  # type: ignore[no-untyped-def]
            seen.append(message.payload)
            await send(message)

    async with MessageBus(MemoryTransport(), middleware=[Watch()]) as bus:
        assert bus._send_now is None
        for i in range(3):
            await bus.publish("t.x", i)
    assert seen == [0, 1, 2]


async def test_a_full_subscriber_makes_the_publisher_wait_rather_than_drop() -> None:
    """The synchronous path declines when a queue would fill up; the awaited one then waits."""
    got: list[int] = []
    gate, all_in = anyio.Event(), anyio.Event()

    async def slow(message: Message) -> None:
        await gate.wait()
        got.append(message.payload)  # type: ignore[arg-type]
        if len(got) == 20:
            all_in.set()

    async with MessageBus(MemoryTransport(MemoryHub(max_buffer=4))) as bus:
        assert bus._send_now is not None
        await bus.subscribe("t.x", slow)
        published = 0

        async def publish_all() -> None:
            nonlocal published
            for i in range(20):
                await bus.publish("t.x", i)
                published += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_all)
            await anyio.sleep(0.2)
            assert published < 20  # held back by the full queue
            gate.set()
        with anyio.fail_after(5):
            await all_in.wait()
    assert got == list(range(20))


async def test_a_publisher_runs_at_most_a_little_ahead_of_a_live_subscriber() -> None:
    """Past 256 messages ahead, each publish lets the subscriber run: it handles messages while
    they are fresh, not ten thousand (the buffer) later."""
    published = 0
    lags: list[int] = []
    done = anyio.Event()

    def handler(message: Message) -> None:
        lags.append(published - message.payload)  # type: ignore[operator]
        if len(lags) == 5000:
            done.set()

    async with MessageBus(MemoryTransport()) as bus:
        await bus.subscribe("t.x", handler)
        for i in range(5000):
            await bus.publish("t.x", i)
            published = i + 1
        with anyio.fail_after(5):
            await done.wait()
    assert max(lags) <= 512  # run-ahead (256) plus what a subscriber takes in one run (256)
