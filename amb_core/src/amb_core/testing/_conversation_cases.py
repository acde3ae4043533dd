"""Conformance cases for conversations beyond one request and one reply: streamed replies (order,
once each, flow control, errors mid-stream, stopping early), scatter-gather, and cancellation of a
plain request. They are built on publish/subscribe and the reply inbox alone, so every transport
that passes the rest of the suite is expected to pass these unchanged."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from ..errors import RemoteHandlerError
from ..message import Message
from ._base import ConformanceBase, wait_until

__all__ = ["ConversationCases"]


class ConversationCases(ConformanceBase):
    """Streams, gather and cancellation, proven on every transport."""

    stream_chunks = 40

    async def test_a_streamed_reply_arrives_in_order_each_chunk_once(
        self, make_transport: Any, topic: str
    ) -> None:
        async with self.open_bus(make_transport) as server, self.open_bus(make_transport) as client:

            async def count_to(message: Message) -> Any:
                for i in range(message.payload["n"]):
                    yield {"i": i}

            await server.subscribe(f"{topic}.count", count_to)
            await self.interest_spread()
            await server.publish(f"{topic}.warmup", None)
            got = [
                chunk.payload["i"]
                async for chunk in client.stream(
                    f"{topic}.count", {"n": self.stream_chunks}, window=4, timeout=self.timeout
                )
            ]
        assert got == list(range(self.stream_chunks))

    async def test_a_stream_that_fails_midway_raises_after_its_chunks(
        self, make_transport: Any, topic: str
    ) -> None:
        calls: list[int] = []
        async with self.open_bus(make_transport) as server, self.open_bus(make_transport) as client:

            async def breaks(message: Message) -> Any:
                calls.append(1)
                yield "a"
                yield "b"
                raise ValueError("model overloaded")

            async def marker(message: Message) -> str:
                return "after"

            dead = await self.collect(server, f"dlq.{topic}.>")
            await server.subscribe(f"{topic}.breaks", breaks)
            await server.subscribe(f"{topic}.marker", marker)
            await self.interest_spread()
            await server.publish(f"{topic}.warmup", None)
            got: list[Any] = []

            async def read_all() -> None:
                async for chunk in client.stream(f"{topic}.breaks", None, timeout=self.timeout):
                    got.append(chunk.payload)

            with pytest.raises(RemoteHandlerError, match="model overloaded"):
                await read_all()
            assert got == ["a", "b"]
            # A request answered after the failure: the subscription went on; no retry came.
            reply = await client.request(f"{topic}.marker", None, timeout=self.timeout)
            assert reply.payload == "after"
            await anyio.sleep(self.quiet)
        assert calls == [1], "a streaming handler is not retried once it has sent a chunk"
        assert dead == [], "a half-sent stream is not dead-lettered: the requester has the error"

    async def test_a_slow_reader_holds_the_responder_to_its_window(
        self, make_transport: Any, topic: str
    ) -> None:
        window = 4
        produced: list[int] = []
        async with self.open_bus(make_transport) as server, self.open_bus(make_transport) as client:

            async def eager(message: Message) -> Any:
                for i in range(200):
                    produced.append(i)
                    yield i

            await server.subscribe(f"{topic}.eager", eager)
            await self.interest_spread()
            await server.publish(f"{topic}.warmup", None)
            async with client.stream(
                f"{topic}.eager", None, window=window, timeout=self.timeout
            ) as chunks:
                taken = [(await chunks.__anext__()).payload for _ in range(2)]
                # The responder may run ahead of what was taken by the window, and no further.
                await wait_until(lambda: len(produced) >= window, self.timeout, "a full window")
                await anyio.sleep(self.quiet * 2)
                assert len(produced) <= len(taken) + window + 1, (
                    f"the responder produced {len(produced)} chunks while the reader took "
                    f"{len(taken)} with a window of {window}"
                )
                rest = [chunk.payload async for chunk in chunks]
        assert taken + rest == list(range(200))

    async def test_stopping_a_stream_closes_the_responders_generator(
        self, make_transport: Any, topic: str
    ) -> None:
        ended: list[str] = []
        async with self.open_bus(make_transport) as server, self.open_bus(make_transport) as client:

            async def endless(message: Message) -> Any:
                i = 0
                try:
                    while True:
                        yield i
                        i += 1
                except GeneratorExit:
                    ended.append("GeneratorExit")
                    raise
                finally:
                    ended.append(f"closed after {i}")

            await server.subscribe(f"{topic}.endless", endless)
            await self.interest_spread()
            await server.publish(f"{topic}.warmup", None)
            async for chunk in client.stream(f"{topic}.endless", None, window=8):
                if chunk.payload == 5:
                    break
            await wait_until(lambda: len(ended) == 2, self.timeout, "the generator to be closed")
        assert ended[0] == "GeneratorExit"

    async def test_a_plain_request_to_a_streaming_handler_gets_the_chunks_as_a_list(
        self, make_transport: Any, topic: str
    ) -> None:
        async with self.open_bus(make_transport) as server, self.open_bus(make_transport) as client:

            async def letters(message: Message) -> Any:
                for letter in "abc":
                    yield letter

            await server.subscribe(f"{topic}.letters", letters)
            await self.interest_spread()
            await server.publish(f"{topic}.warmup", None)
            reply = await client.request(f"{topic}.letters", None, timeout=self.timeout)
        assert reply.payload == ["a", "b", "c"]

    async def test_gather_hears_every_fan_out_subscriber_and_one_of_each_group(
        self, make_transport: Any, topic: str
    ) -> None:
        async with (
            self.open_bus(make_transport, name="alpha") as alpha,
            self.open_bus(make_transport, name="beta") as beta,
            self.open_bus(make_transport, name="gamma") as gamma,
            self.open_bus(make_transport, name="client") as client,
        ):
            for bus in (alpha, beta):
                name = bus.name

                async def quote(message: Message, name: Any = name) -> Any:
                    return {"from": name, "sku": message.payload}

                await bus.subscribe(f"{topic}.quote", quote)
            caps = self.caps(make_transport)
            if caps.consumer_groups:
                for bus in (gamma, client):

                    async def pool(message: Message) -> Any:
                        return {"from": "pool"}

                    await bus.subscribe(f"{topic}.quote", pool, group="pool")
            for bus in (alpha, beta, gamma, client):
                await bus.publish(f"{topic}.warmup", None)
            await self.interest_spread()
            expected = 3 if caps.consumer_groups else 2
            started = time.monotonic()
            replies = await client.gather(
                f"{topic}.quote", "A7", timeout=self.timeout, max_replies=expected
            )
            took = time.monotonic() - started
            froms = sorted(r.payload["from"] for r in replies)
            assert froms == sorted(["alpha", "beta"] + (["pool"] if caps.consumer_groups else []))
            assert {"alpha", "beta"} <= {r.sender for r in replies}, "each reply names its sender"
            assert took < self.timeout / 2, "max_replies ends the gather without waiting it out"
            nobody = await client.gather(f"{topic}.nobody", None, timeout=1.0)
            assert nobody == []

    async def test_a_cancelled_request_cancels_its_handler(
        self, make_transport: Any, topic: str
    ) -> None:
        started = anyio.Event()
        outcome: list[str] = []
        async with self.open_bus(make_transport) as server, self.open_bus(make_transport) as client:

            async def slow(message: Message) -> Any:
                if message.payload == "warmup":
                    return "ready"
                started.set()
                try:
                    await anyio.sleep(self.timeout * 3)
                except BaseException:
                    outcome.append("cancelled")
                    raise
                outcome.append("ran to its end")
                return "late"

            await server.subscribe(f"{topic}.slow", slow, concurrency=2)
            await self.interest_spread()
            await server.publish(f"{topic}.warmup", None)
            assert (await client.request(f"{topic}.slow", "warmup", timeout=self.timeout)).payload
            await server.listen_for_cancellations()  # the responder hears cancels from now on
            async with anyio.create_task_group() as tg:

                async def ask() -> None:
                    await client.request(f"{topic}.slow", "work", timeout=self.timeout * 3)

                tg.start_soon(ask)
                with anyio.fail_after(self.timeout):
                    await started.wait()
                tg.cancel_scope.cancel()
            await wait_until(lambda: bool(outcome), self.timeout, "the handler to be cancelled")
        assert outcome == ["cancelled"]
