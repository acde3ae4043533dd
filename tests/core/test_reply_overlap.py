"""``Transport.replies_overlap``: a one-at-a-time responder takes its next request while its last
reply is still being sent, on transports that ask for it (Redis pub/sub), and loses nothing by it:
handlers still run one at a time, every reply is sent (also when the subscriber stops), a failed
reply is logged and the subscription goes on, and unsent replies are bounded."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.lowlevel
import attrs
import pytest

from amb_core import Message, MessageBus
from amb_core.errors import RequestTimeoutError
from amb_core.inbox import INBOX_PREFIX
from amb_core.memory import MemoryTransport
from amb_core.subscriber import REPLIES_IN_FLIGHT

pytestmark = pytest.mark.anyio


class _GatedReplies(MemoryTransport):
    """Replies (publishes to an inbox) wait at a gate; everything else passes. At most once, as
    the transports that overlap replies are (an at-least-once one acks after the reply)."""

    def __init__(self, overlap: bool = True) -> None:
        super().__init__()
        self.capabilities = attrs.evolve(self.capabilities, at_least_once=False)
        self.replies_overlap = overlap
        self.gate = anyio.Event()
        self.waiting = 0  # replies held at the gate now
        self.most_waiting = 0
        self.fail_payloads: set[object] = set()
        self._changed = anyio.Event()

    def changed(self) -> None:
        """Wake :meth:`until` (the gate's count or a test's own counter changed)."""
        self._changed.set()
        self._changed = anyio.Event()

    async def until(self, check: Callable[[], bool]) -> None:
        with anyio.fail_after(5):
            while not check():
                await self._changed.wait()

    async def publish(self, message: Message) -> None:
        if message.topic.startswith(INBOX_PREFIX):
            if message.payload in self.fail_payloads:
                raise RuntimeError(f"reply {message.payload} refused")
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
            self.changed()
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
        await super().publish(message)


async def test_a_one_at_a_time_responder_handles_on_while_its_replies_are_sent() -> None:
    transport = _GatedReplies()
    running = most_running = 0
    handled: list[int] = []

    async def echo(message: Message) -> object:
        nonlocal running, most_running
        running += 1
        most_running = max(most_running, running)
        await anyio.lowlevel.checkpoint()
        running -= 1
        handled.append(message.payload)  # type: ignore[arg-type]
        transport.changed()
        return message.payload

    async with MessageBus(transport) as bus:
        await bus.subscribe("svc.echo", echo)
        answers: dict[int, object] = {}

        async def ask(i: int) -> None:
            answers[i] = (await bus.request("svc.echo", i, timeout=10)).payload

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(ask, i)
            # every request handled while no reply has been sent
            await transport.until(lambda: len(handled) == transport.waiting == 10)
            assert not answers
            transport.gate.set()
        assert answers == {i: i for i in range(10)}
        assert most_running == 1  # handlers still one at a time


async def test_without_overlap_the_responder_waits_for_each_reply() -> None:
    """The default (and at-least-once transports): the next request waits for the last reply."""
    transport = _GatedReplies(overlap=False)
    handled: list[object] = []
    async with MessageBus(transport) as bus:
        await bus.subscribe("svc.echo", lambda m: handled.append(m.payload) or m.payload)
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(bus.request, "svc.echo", i)
            await transport.until(lambda: transport.waiting == 1)
            await anyio.sleep(0.1)
            assert len(handled) == 1 and transport.waiting == 1
            transport.gate.set()


async def test_unsent_replies_are_bounded() -> None:
    transport = _GatedReplies()
    total = REPLIES_IN_FLIGHT + 20
    handled = 0

    def echo(message: Message) -> object:
        nonlocal handled
        handled += 1
        return message.payload

    async with MessageBus(transport) as bus:
        await bus.subscribe("svc.echo", echo)
        async with anyio.create_task_group() as tg:
            for i in range(total):
                tg.start_soon(bus.request, "svc.echo", i)
            await transport.until(lambda: transport.waiting == REPLIES_IN_FLIGHT)
            await anyio.sleep(0.1)
            # the handler of the next request ran; its reply waits for room, so no more ran
            assert transport.waiting == REPLIES_IN_FLIGHT
            assert handled == REPLIES_IN_FLIGHT + 1
            transport.gate.set()
        assert handled == total
        assert transport.most_waiting == REPLIES_IN_FLIGHT


async def test_a_failed_reply_is_logged_and_the_subscription_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = _GatedReplies()
    transport.gate.set()
    transport.fail_payloads.add(1)
    async with MessageBus(transport) as bus:
        await bus.subscribe("svc.echo", lambda m: m.payload)
        with (
            caplog.at_level(logging.ERROR, logger="amb.subscriber"),
            pytest.raises(RequestTimeoutError),
        ):
            await bus.request("svc.echo", 1, timeout=0.3)
        assert any("reply 1 refused" in r.getMessage() for r in caplog.records)
        assert (await bus.request("svc.echo", 2, timeout=5)).payload == 2


async def test_replies_still_unsent_when_the_subscriber_stops_are_sent() -> None:
    transport = _GatedReplies()
    async with MessageBus(transport) as bus:
        responder = await bus.subscribe("svc.echo", lambda m: m.payload)
        async with anyio.create_task_group() as tg:
            answers: list[object] = []

            async def ask(i: int) -> None:
                answers.append((await bus.request("svc.echo", i, timeout=10)).payload)

            for i in range(3):
                tg.start_soon(ask, i)
            await transport.until(lambda: transport.waiting == 3)
            tg.start_soon(responder.cancel)  # drains: waits for the replies in flight
            await anyio.sleep(0.1)
            assert not answers
            transport.gate.set()
        assert sorted(answers) == [0, 1, 2]  # type: ignore[type-var]
