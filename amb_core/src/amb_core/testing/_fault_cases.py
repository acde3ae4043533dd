"""Conformance cases at parity with Watermill's universal suite's fault tests: a subscription
survives a broker restart (Reconnect), no next delivery before the current one is settled (NoAck),
many buses closed at once (ConcurrentClose), a bus closed right after a batch (PublisherClose), and
a group member closed in the middle of a stream (ContinueAfterSubscribeClose)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from ..bus import MessageBus
from ..errors import TransportError
from ..message import Message
from ..transport import ConnectionState, Transport
from ._base import ConformanceBase, RestartableBroker, wait_until

__all__ = ["FaultCases"]


def _own_threads() -> set[str]:
    """The live threads, less the event loops' worker pools (anyio's, trio's thread cache, and
    asyncio's default executor, which drivers such as aiobotocore use for blocking file reads):
    their workers are reused, bounded and owned by the loop, not a transport's leak."""
    return {
        f"{t.name}#{t.ident}"
        for t in threading.enumerate()
        if t.is_alive() and not t.name.startswith(_POOLED)
    }


_POOLED = ("AnyIO worker thread", "Trio thread", "asyncio_")


class FaultCases(ConformanceBase):
    """Faults and lifecycles a user meets: restarts, slow handlers, closing in every order."""

    async def _publish_through_outage(
        self, bus: MessageBus, topic: str, payload: Any, deadline: float
    ) -> None:
        """Publish, retrying typed transport errors (the broker may still be coming back) until
        ``deadline``; anything else, or an error past it, fails the case."""
        while True:
            try:
                await bus.publish(topic, payload)
                return
            except TransportError:
                if anyio.current_time() > deadline:
                    raise
                await anyio.sleep(0.1)

    async def test_reconnect_subscription_survives_broker_restart(
        self, restartable_broker: RestartableBroker, topic: str
    ) -> None:
        """Kill -9 the broker under a live subscription and start it again: the transport says it is
        reconnecting and then connected, the subscription goes on without being made again, and a
        durable mode loses nothing it acknowledged, including what was not consumed yet."""
        make: Callable[[], Transport] = restartable_broker.make_transport
        caps = make().capabilities
        durable = caps.persistent and caps.at_least_once
        group = f"{topic}-survivors" if caps.consumer_groups else None
        async with self.open_bus(make) as consumer, self.open_bus(make) as producer:
            got = await self.collect(consumer, f"{topic}.life", group=group)
            if not durable:  # at most once: first see the subscription carry a message
                await self._until_live(producer, got, f"{topic}.life", self.timeout)
            for i in range(20):
                await producer.publish(f"{topic}.life", i)
            await wait_until(
                lambda: len({m.payload for m in got} - {"probe"}) >= 20, self.timeout, "before"
            )
            expected = list(range(20))
            if durable:  # acknowledged by the broker, maybe not consumed yet when it dies
                for i in range(20, 40):
                    await producer.publish(f"{topic}.life", i)
                expected += range(20, 40)
            restartable_broker.kill()
            await wait_until(
                lambda: (
                    producer.state is ConnectionState.RECONNECTING
                    and consumer.state is ConnectionState.RECONNECTING
                ),
                self.timeout,
                lambda: f"both to report reconnecting ({producer.state}, {consumer.state})",
            )
            restartable_broker.start()
            await wait_until(
                lambda: (
                    producer.state is ConnectionState.CONNECTED
                    and consumer.state is ConnectionState.CONNECTED
                ),
                self.timeout * 2,
                lambda: f"both to report connected ({producer.state}, {consumer.state})",
            )
            deadline = anyio.current_time() + self.timeout * 2
            if not durable:  # at most once: what is sent before the subscription is back is lost
                got[:] = [m for m in got if m.payload != "probe"]
                await self._until_live(producer, got, f"{topic}.life", self.timeout * 2)
            for i in range(40, 60):
                await self._publish_through_outage(producer, f"{topic}.life", i, deadline)
            expected += range(40, 60)

            def arrived() -> set[Any]:
                return {m.payload for m in got} - {"probe"}

            await wait_until(
                lambda: arrived() >= set(expected),
                self.timeout * 2,
                lambda: (
                    f"everything after the restart; missing {sorted(set(expected) - arrived())[:20]}"
                ),
            )
            assert arrived() == set(expected), "nothing unknown arrived"

    async def _until_live(
        self, producer: Any, got: list[Message], topic: str, timeout: float
    ) -> None:
        """Publish ``"probe"`` to ``topic`` every 0.2 s until one reaches ``got``: an at-most-once
        subscription is live (a message sent before that may be lost, as the mode allows)."""
        deadline = anyio.current_time() + timeout
        while not any(m.payload == "probe" for m in got):
            if anyio.current_time() > deadline:
                pytest.fail(f"the subscription to {topic!r} carried no message in {timeout:g}s")
            await self._publish_through_outage(producer, topic, "probe", deadline)
            await anyio.sleep(0.2)

    async def test_no_next_delivery_before_the_current_is_settled(
        self, make_transport: Any, topic: str
    ) -> None:
        """With concurrency 1, a handler that has not returned holds back the next delivery."""
        release = anyio.Event()
        started: list[Any] = []
        finished: list[Any] = []

        async def slow_first(message: Message) -> None:
            started.append(message.payload)
            if len(started) == 1:
                await release.wait()
            finished.append(message.payload)

        async with self.open_bus(make_transport) as bus:
            await bus.subscribe(f"{topic}.noack", slow_first, concurrency=1)
            await bus.publish(f"{topic}.noack", "one")
            await bus.publish(f"{topic}.noack", "two")
            await wait_until(lambda: len(started) >= 1, self.timeout, "the first delivery")
            await anyio.sleep(self.quiet)
            assert len(started) == 1 and finished == [], "no second handler while one is open"
            release.set()
            await wait_until(lambda: len(finished) == 2, self.timeout, "both, one after the other")
            assert sorted(started) == sorted(finished) == ["one", "two"]
            assert started == finished, "each finished before the next started"

    async def test_concurrent_close_neither_hangs_nor_leaks(
        self, make_transport: Any, topic: str
    ) -> None:
        """Many buses, each with subscribers and traffic, all closed at the same moment."""
        threads_before = _own_threads()
        groups = self.caps(make_transport).consumer_groups
        buses = [MessageBus(make_transport(), drain_timeout=5.0) for _ in range(5)]
        got: list[Message] = []
        close = anyio.Event()
        opened: list[MessageBus] = []

        async def live(bus: MessageBus, n: int) -> None:
            # A bus is opened and closed in one task (its task group's rule), so each bus gets
            # its own task, and one event closes them all at the same moment.
            async with bus:
                await bus.subscribe(f"{topic}.cc", got.append)
                if groups:
                    await bus.subscribe(f"{topic}.cc", got.append, group=f"{topic}-closers")
                await bus.publish(f"{topic}.cc", n)
                opened.append(bus)
                await close.wait()

        with anyio.fail_after(self.timeout * 2):
            async with anyio.create_task_group() as tg:
                for n, bus in enumerate(buses):
                    tg.start_soon(live, bus, n)
                await wait_until(lambda: len(opened) == len(buses), self.timeout, "every bus")
                await wait_until(lambda: len(got) >= len(buses), self.timeout, "some traffic")
                close.set()
        assert all(bus.state is ConnectionState.CLOSED for bus in buses)
        await wait_until(
            lambda: _own_threads() <= threads_before,
            self.timeout,
            lambda: f"the transports' threads to end: {sorted(_own_threads() - threads_before)}",
        )

    async def test_publisher_close_delivers_everything_accepted(
        self, make_transport: Any, topic: str
    ) -> None:
        """A bus closed right after ``publish_many`` returned: everything it accepted arrives."""
        async with self.open_bus(make_transport) as consumer:
            got = await self.collect(consumer, f"{topic}.pc")
            publisher = MessageBus(make_transport())
            await publisher.connect()
            try:
                await publisher.publish_many(f"{topic}.pc", list(range(200)))
            finally:
                await publisher.aclose()
            await wait_until(
                lambda: len({m.payload for m in got}) >= 200,
                self.timeout,
                lambda: f"the batch: {len({m.payload for m in got})} of 200",
            )
            self.assert_each_once(got, list(range(200)), "the closed publisher's batch")

    async def test_continue_after_a_group_member_closes_mid_stream(
        self, make_transport: Any, topic: str
    ) -> None:
        """A group member closed in the middle of 500 messages and another opened: a durable
        group loses nothing."""
        self.require(self.caps(make_transport), "persistent", "consumer_groups", "at_least_once")
        group = f"{topic}-continuers"
        first: list[Message] = []
        enough = anyio.Event()

        def count(message: Message) -> None:
            first.append(message)
            if len(first) >= 100:
                enough.set()

        async with self.open_bus(make_transport) as producer:
            async with self.open_bus(make_transport) as member:
                await member.subscribe(f"{topic}.cont", count, group=group, ack_wait=self.ack_wait)
                for start in range(0, 500, 50):
                    await producer.publish_many(f"{topic}.cont", list(range(start, start + 50)))
                with anyio.fail_after(self.timeout):
                    await enough.wait()
            async with self.open_bus(make_transport) as heir:
                rest = await self.collect(
                    heir, f"{topic}.cont", group=group, ack_wait=self.ack_wait
                )
                await wait_until(
                    lambda: len({m.payload for m in first + rest}) >= 500,
                    self.timeout + self.ack_wait * 3,
                    lambda: f"the rest: {len({m.payload for m in first + rest})} of 500",
                )
        assert {m.payload for m in first + rest} == set(range(500))
