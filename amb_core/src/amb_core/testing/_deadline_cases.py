"""Conformance cases for deadlines that travel with the work (:mod:`amb_core.deadlines`): a request
inside a handler inherits what is left of the handler's deadline, a request that arrives after its
deadline is never handled, and retries stop at a message's deadline."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from ..deadletter import H_DLQ_REASON, RetryPolicy
from ..errors import RequestTimeoutError
from ..message import Message
from ._base import ConformanceBase, wait_until

__all__ = ["DeadlineCases"]


class DeadlineCases(ConformanceBase):
    """Deadlines, proven on every transport: they ride in the ordinary ``amb-ts``/``amb-ttl``."""

    async def test_a_request_inside_a_handler_inherits_its_deadline(
        self, make_transport: Any, topic: str
    ) -> None:
        budget = 1.5
        seen: list[tuple[float | None, float, type[BaseException] | None]] = []
        async with self.open_bus(make_transport) as server, self.open_bus(make_transport) as client:

            async def silent(message: Message) -> None:
                return None  # never answers

            async def asks_on(message: Message) -> str:
                left = message.remaining()
                started = time.monotonic()
                try:
                    await server.request(f"{topic}.void", "inner", timeout=60)
                except BaseException as exc:
                    # Timed out at the deadline, or cancelled by the requester, whose own timer
                    # runs out at the same instant: either way not after 60 s.
                    seen.append((left, time.monotonic() - started, type(exc)))
                    raise
                seen.append((left, time.monotonic() - started, None))
                return "answered"

            await server.subscribe(f"{topic}.void", silent)
            await server.subscribe(f"{topic}.outer", asks_on)
            await self.interest_spread()
            await server.publish(f"{topic}.warmup", None)  # settles the pending subscriptions
            with pytest.raises(RequestTimeoutError):
                await client.request(f"{topic}.outer", "outer", timeout=budget)
            await wait_until(lambda: len(seen) >= 1, self.timeout, "the handler's nested request")
        left, waited, raised = seen[0]
        assert left is not None and 0 < left <= budget, f"the handler saw {left}s left"
        assert raised is not None and (
            issubclass(raised, RequestTimeoutError)
            or issubclass(raised, anyio.get_cancelled_exc_class())
        ), raised
        assert waited <= budget + 1.0, f"the nested request waited {waited:.2f}s, not its 60s"

    async def test_a_request_past_its_deadline_is_never_handled(
        self, make_transport: Any, topic: str
    ) -> None:
        release = anyio.Event()
        handled: list[Any] = []
        async with self.open_bus(make_transport) as server, self.open_bus(make_transport) as client:

            async def one_at_a_time(message: Message) -> Any:
                handled.append(message.payload)
                if message.payload == "first":
                    await release.wait()  # busy while the second request waits and expires
                return "ok"

            await server.subscribe(f"{topic}.busy", one_at_a_time, concurrency=1)
            await self.interest_spread()
            dead = await self.collect(server, f"dlq.{topic}.>")
            await server.publish(f"{topic}.warmup", None)

            async def first() -> None:
                await client.request(f"{topic}.busy", "first", timeout=30)

            async with anyio.create_task_group() as tg:
                tg.start_soon(first)
                await wait_until(lambda: handled == ["first"], self.timeout, "the first request")
                with pytest.raises(RequestTimeoutError):
                    await client.request(f"{topic}.busy", "late", timeout=0.5)
                # The request's deadline is its timestamp (taken inside publish) plus 0.5 s: a
                # little later than the requester's own give-up. Released at once, the responder
                # may pick it up just before it expires (seen on a loaded machine): wait it out.
                await anyio.sleep(0.25)
                release.set()
            await wait_until(lambda: len(dead) >= 1, self.timeout, "the expired request's letter")
            await anyio.sleep(self.quiet)
        assert handled == ["first"], "the late request never reached the handler"
        assert [(m.payload, m.headers[H_DLQ_REASON]) for m in dead] == [("late", "expired")]

    async def test_retries_stop_at_the_deadline(self, make_transport: Any, topic: str) -> None:
        retry = RetryPolicy(max_attempts=50, initial_delay=0.2, multiplier=1, jitter=0)
        async with self.open_bus(make_transport, retry=retry) as bus:
            attempts: list[int] = []

            async def always_fails(message: Message) -> None:
                attempts.append(message.attempt)
                raise RuntimeError("still down")

            await bus.subscribe(f"{topic}.budget", always_fails)
            dead = await self.collect(bus, f"dlq.{topic}.>")
            await bus.publish(f"{topic}.budget", "job", ttl=3.0)
            await wait_until(lambda: len(dead) >= 1, self.timeout, "the expired letter")
        assert dead[0].headers[H_DLQ_REASON] == "expired"
        # 50 attempts 0.2 s apart would take 10 s: the 3 s budget ends them first. (A broker slow
        # enough to deliver it after 3 s dead-letters it as expired without an attempt: fine.)
        assert len(attempts) < 20, f"{len(attempts)} attempts within a 3s budget"
