"""Streams, gather and cancellation on the in-memory transport, where a middleware can do what a
real broker sometimes does to frames (reorder, duplicate, drop) and time can be controlled. The
same behaviours against every real broker are in the conformance suite (ConversationCases)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from amb_core import (
    MemoryHub,
    MemoryTransport,
    Message,
    MessageBus,
    Middleware,
    NotConnectedError,
    RemoteHandlerError,
    RequestTimeoutError,
    StreamGapError,
    StreamIdleError,
)
from amb_core.middleware import Call, Send

pytestmark = pytest.mark.anyio


def _pair() -> tuple[MessageBus, MessageBus]:
    hub = MemoryHub()
    return MessageBus(MemoryTransport(hub), name="server"), MessageBus(
        MemoryTransport(hub), name="client"
    )


class ReorderAndDuplicate(Middleware):
    """Holds a stream's frames and sends them, end frame included, in reverse order, twice each."""

    def __init__(self) -> None:
        self.held: list[Message] = []

    async def on_publish(self, message: Message, send: Send) -> None:
        if "amb-seq" not in message.headers:
            await send(message)
            return
        self.held.append(message)
        if "amb-stream-end" in message.headers:
            for frame in reversed(self.held):
                await send(frame)
                await send(frame)


class DropFrame(Middleware):
    def __init__(self, seq: str) -> None:
        self.seq = seq

    async def on_publish(self, message: Message, send: Send) -> None:
        if message.headers.get("amb-seq") != self.seq or "amb-control" in message.headers:
            await send(message)


async def count_to(message: Message) -> Any:
    for i in range(message.payload):
        yield i


async def test_frames_reordered_and_duplicated_by_the_broker_arrive_in_order_once() -> None:
    hub = MemoryHub()
    server = MessageBus(MemoryTransport(hub), middleware=[ReorderAndDuplicate()])
    async with server, MessageBus(MemoryTransport(hub)) as client:
        await server.subscribe("count", count_to)
        got = [c.payload async for c in client.stream("count", 10, window=32, timeout=5)]
    assert got == list(range(10))


async def test_a_lost_frame_is_waited_for_then_reported() -> None:
    hub = MemoryHub()
    server = MessageBus(MemoryTransport(hub), middleware=[DropFrame("3")])
    got: list[Any] = []
    async with server, MessageBus(MemoryTransport(hub)) as client:
        await server.subscribe("count", count_to)

        async def read() -> None:
            async for chunk in client.stream("count", 6, gap_timeout=0.3, timeout=5):
                got.append(chunk.payload)

        with anyio.fail_after(3), pytest.raises(StreamGapError, match="chunk 3"):
            await read()
    assert got == [0, 1]


async def test_a_lost_credit_is_sent_again_and_the_stream_goes_on() -> None:
    class DropFirstAck(Middleware):
        dropped = 0

        async def on_publish(self, message: Message, send: Send) -> None:
            if message.headers.get("amb-control") == "ack" and not self.dropped:
                self.dropped += 1
                return
            await send(message)

    hub = MemoryHub()
    dropper = DropFirstAck()
    async with (
        MessageBus(MemoryTransport(hub)) as server,
        MessageBus(MemoryTransport(hub), middleware=[dropper]) as client,
    ):
        await server.subscribe("count", count_to)
        with anyio.fail_after(5):
            got = [c.payload async for c in client.stream("count", 20, window=4, timeout=10)]
    assert got == list(range(20))
    assert dropper.dropped == 1


async def test_idle_timeout_bounds_the_wait_for_each_chunk_and_stops_the_responder() -> None:
    server, client = _pair()
    closed = anyio.Event()
    async with server, client:

        @server.subscribe("slow")
        async def slow(message: Message) -> Any:
            try:
                yield "first"
                await anyio.sleep(30)
                yield "never"
            finally:
                closed.set()

        await server.subscribers[0]
        got: list[Any] = []

        async def read() -> None:
            async for chunk in client.stream("slow", None, idle_timeout=0.3, timeout=20):
                got.append(chunk.payload)

        with anyio.fail_after(3), pytest.raises(StreamIdleError):
            await read()
        assert got == ["first"]
        with anyio.fail_after(3):
            await closed.wait()


async def test_timeout_bounds_the_whole_stream() -> None:
    server, client = _pair()
    async with server, client:

        @server.subscribe("drip")
        async def drip(message: Message) -> Any:
            for i in range(100):
                await anyio.sleep(0.1)
                yield i

        await server.subscribers[0]
        got: list[Any] = []

        async def read() -> None:
            async for chunk in client.stream("drip", None, timeout=0.55):
                got.append(chunk.payload)

        with anyio.fail_after(3), pytest.raises(RequestTimeoutError):
            await read()
        assert 2 <= len(got) <= 6


async def test_a_plain_responder_answers_a_stream_with_one_chunk() -> None:
    server, client = _pair()
    async with server, client:
        await server.subscribe("plain", lambda m: {"whole": True})
        got = [c.payload async for c in client.stream("plain", None, timeout=5)]
    assert got == [{"whole": True}]


async def test_middleware_sees_the_whole_stream_call_and_each_chunk_published() -> None:
    seen: list[Any] = []

    class Watch(Middleware):
        async def on_receive(self, message: Message, call: Call) -> Any:
            result = await call(message)
            seen.append(("handled", message.topic, result))
            return result

        async def on_publish(self, message: Message, send: Send) -> None:
            if "amb-seq" in message.headers:
                seen.append(("frame", message.headers["amb-seq"]))
            await send(message)

    hub = MemoryHub()
    async with (
        MessageBus(MemoryTransport(hub), middleware=[Watch()]) as server,
        MessageBus(MemoryTransport(hub)) as client,
    ):
        await server.subscribe("count", count_to)
        got = [c.payload async for c in client.stream("count", 3, timeout=5)]
    assert got == [0, 1, 2]
    assert seen == [
        ("frame", "1"),
        ("frame", "2"),
        ("frame", "3"),
        ("frame", "4"),  # the end frame
        ("handled", "count", None),
    ]


async def test_leaving_a_stream_early_closes_the_generator() -> None:
    server, client = _pair()
    ended = anyio.Event()
    async with server, client:

        @server.subscribe("endless")
        async def endless(message: Message) -> Any:
            try:
                while True:
                    yield "tick"
            except GeneratorExit:
                ended.set()
                raise

        await server.subscribers[0]
        async with client.stream("endless", None, window=2) as ticks:
            assert (await ticks.__anext__()).payload == "tick"
        with anyio.fail_after(3):
            await ended.wait()


async def test_a_stream_inside_a_handler_inherits_its_deadline() -> None:
    server, client = _pair()
    budgets: list[float | None] = []
    async with server, client:

        @server.subscribe("inner")
        async def inner(message: Message) -> Any:
            budgets.append(message.remaining())
            yield "x"

        @server.subscribe("outer")
        async def outer(message: Message) -> Any:
            return [c.payload async for c in server.stream("inner", None, timeout=60)]

        await server.subscribers[-1]
        reply = await client.request("outer", None, timeout=1.0)
    assert reply.payload == ["x"]
    assert budgets[0] is not None and budgets[0] <= 1.0


async def test_closing_the_bus_ends_a_waiting_stream() -> None:
    server, client = _pair()
    ended: list[BaseException] = []
    async with server:

        @server.subscribe("silent")
        async def silent(message: Message) -> Any:
            await anyio.sleep(30)
            yield "never"

        await server.subscribers[0]

        async def read() -> None:
            try:
                async for _ in client.stream("silent", None, timeout=20):
                    pass
            except NotConnectedError as exc:
                ended.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                await client.connect()  # inside the task group: its scope closes first
                tg.start_soon(read)
                await anyio.sleep(0.2)
                await client.aclose()
    assert len(ended) == 1


async def test_gather_keeps_failures_apart_and_dedupes() -> None:
    hub = MemoryHub()
    buses = [MessageBus(MemoryTransport(hub), name=f"agent{i}") for i in range(3)]
    async with buses[0], buses[1], buses[2], MessageBus(MemoryTransport(hub)) as client:
        await buses[0].subscribe("vote", lambda m: "yes")
        await buses[1].subscribe("vote", lambda m: "no")

        def broken(message: Message) -> None:
            raise RuntimeError("abstains")

        from amb_core import RetryPolicy

        await buses[2].subscribe("vote", broken, retry=RetryPolicy(max_attempts=1))
        gather = client.gather("vote", None, timeout=0.5)
        replies = await gather
    assert sorted((r.sender, r.payload) for r in replies) == [("agent0", "yes"), ("agent1", "no")]
    assert len(gather.failures) == 1
    assert isinstance(gather.failures[0], RemoteHandlerError)
    assert "abstains" in str(gather.failures[0])


async def test_gather_without_responders_is_empty_after_its_timeout() -> None:
    async with MessageBus() as bus:
        with anyio.fail_after(3):
            assert await bus.gather("nobody.home", None, timeout=0.2) == []


async def test_a_request_given_up_by_timeout_cancels_the_handler() -> None:
    server, client = _pair()
    cancelled = anyio.Event()
    async with server, client:

        @server.subscribe("think")
        async def think(message: Message) -> Any:
            try:
                await anyio.sleep(30)
            except BaseException:
                cancelled.set()
                raise

        await server.listen_for_cancellations()
        with pytest.raises(RequestTimeoutError):
            await client.request("think", None, timeout=0.3)
        with anyio.fail_after(3):
            await cancelled.wait()


class SlowAcknowledgement(Middleware):
    """Delivers a request at once but returns from publish only later, as a broker whose
    acknowledgement lags its delivery does (SQS: the handler starts before the HTTP reply)."""

    async def on_publish(self, message: Message, send: Send) -> None:
        await send(message)
        if message.topic == "think":
            await anyio.sleep(30)


def _lagging_pair() -> tuple[MessageBus, MessageBus]:
    hub = MemoryHub()
    server = MessageBus(MemoryTransport(hub), name="server")
    client = MessageBus(MemoryTransport(hub), name="client", middleware=[SlowAcknowledgement()])
    return server, client


async def _thinking(server: MessageBus, streaming: bool) -> tuple[anyio.Event, anyio.Event]:
    """A responder on ``think`` that sets the first event when it starts and the second when
    it is cancelled."""
    started, cancelled = anyio.Event(), anyio.Event()

    async def think(message: Message) -> Any:
        started.set()
        try:
            await anyio.sleep(30)
        except BaseException:
            cancelled.set()
            raise

    async def think_aloud(message: Message) -> Any:
        yield "hmm"
        await think(message)

    await server.subscribe("think", think_aloud if streaming else think)
    await server.listen_for_cancellations()
    return started, cancelled


@pytest.mark.parametrize("how", ["cancelled", "timed out"])
async def test_a_request_given_up_while_its_publish_waits_still_cancels_the_handler(
    how: str,
) -> None:
    server, client = _lagging_pair()
    async with server, client:
        started, cancelled = await _thinking(server, streaming=False)
        if how == "timed out":
            with pytest.raises(RequestTimeoutError):
                await client.request("think", None, timeout=0.3)
        else:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: client.request("think", None, timeout=20))
                with anyio.fail_after(3):
                    await started.wait()
                tg.cancel_scope.cancel()
        with anyio.fail_after(3):
            await cancelled.wait()


@pytest.mark.parametrize("kind", ["stream", "gather"])
async def test_a_conversation_given_up_while_its_publish_waits_still_cancels_the_handler(
    kind: str,
) -> None:
    server, client = _lagging_pair()
    async with server, client:
        started, cancelled = await _thinking(server, streaming=kind == "stream")

        async def converse() -> None:
            if kind == "stream":
                async for _ in client.stream("think", None, timeout=20):
                    pass
            else:
                await client.gather("think", None, timeout=20)

        async with anyio.create_task_group() as tg:
            tg.start_soon(converse)
            with anyio.fail_after(3):
                await started.wait()
            tg.cancel_scope.cancel()
        with anyio.fail_after(3):
            await cancelled.wait()


class HoldRequests(Middleware):
    """Keeps requests on ``think`` back until released, as a broker whose queue for them lags
    the one for cancels does (no broker orders two topics against each other)."""

    def __init__(self) -> None:
        self.held: list[tuple[Message, Send]] = []

    async def on_publish(self, message: Message, send: Send) -> None:
        if message.topic == "think":
            self.held.append((message, send))
        else:
            await send(message)

    async def release(self) -> None:
        for message, send in self.held:
            await send(message)


@pytest.mark.parametrize("streaming", [False, True], ids=["request", "stream"])
async def test_a_cancel_that_overtakes_its_request_cancels_the_handler_when_it_comes(
    streaming: bool,
) -> None:
    hub = MemoryHub()
    hold = HoldRequests()
    server = MessageBus(MemoryTransport(hub), name="server")
    client = MessageBus(MemoryTransport(hub), name="client", middleware=[hold])
    heard = anyio.Event()
    async with server, client:
        started, cancelled = await _thinking(server, streaming=streaming)

        @server.subscribe("_INBOX.cancel")
        async def hear(message: Message) -> None:
            heard.set()

        async def ask() -> None:
            if streaming:
                async for _ in client.stream("think", None, timeout=20):
                    pass
            else:
                await client.request("think", None, timeout=20)

        async with anyio.create_task_group() as tg:  # given up (not timed out: it must not
            tg.start_soon(ask)  # expire before it is released)
            await anyio.sleep(0.2)
            tg.cancel_scope.cancel()
        with anyio.fail_after(3):
            await heard.wait()  # the cancel reached the responder's bus before its request
        await hold.release()
        with anyio.fail_after(3):
            await cancelled.wait() if not streaming else await anyio.sleep(0.3)
        if streaming:  # cancelled before its first chunk: the generator never ran
            assert not started.is_set()
        else:
            assert started.is_set()
