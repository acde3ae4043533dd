"""Conformance cases that prove the capabilities a transport declares, and the dead-letter
guarantees that depend on them: the size limit, the native delay, broker-native headers, foreign
messages on wildcard subscriptions, and dead letters that do not fit or cannot be stored."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import pytest

from ..bus import MessageBus
from ..deadletter import H_DLQ_REASON, H_DLQ_TRUNCATED, DeadLetter, RetryPolicy, publish_to_dlq
from ..errors import MessageTooLargeError, RejectMessage
from ..message import Message
from ..wire import H_CORRELATION_ID, H_ID, H_SENDER
from ._base import ConformanceBase, wait_until

__all__ = ["CapabilityCases"]


class CapabilityCases(ConformanceBase):
    """One case per capability flag that promises behaviour (see :class:`Capabilities`)."""

    async def test_max_message_size_is_refused_before_sending(
        self, make_transport: Any, topic: str
    ) -> None:
        limit = self.caps(make_transport).max_message_size
        if limit is None:
            pytest.skip("transport declares no max_message_size")
        async with self.open_bus(make_transport) as bus:
            limit = bus.transport.capabilities.max_message_size  # some learn it at connect
            assert limit is not None and limit > 0
            got = await self.collect(bus, f"{topic}.size")
            with pytest.raises(MessageTooLargeError) as caught:
                await bus.publish(f"{topic}.size", b"x" * (limit + 1))
            assert caught.value.limit == limit, "the error names the broker's true limit"
            assert str(limit) in str(caught.value)
            half = b"h" * (limit // 2)
            await bus.publish(f"{topic}.size", half)
            await wait_until(lambda: len(got) >= 1, self.timeout, "the message of half the limit")
            await anyio.sleep(self.quiet)
            assert [m.payload for m in got] == [half], "nothing of the refused message was sent"

    async def test_native_delay_waits_before_redelivery(
        self, make_transport: Any, topic: str
    ) -> None:
        self.require(self.caps(make_transport), "native_delay")
        delay = 1.0
        retry = RetryPolicy(max_attempts=2, initial_delay=delay, max_delay=delay, jitter=0)
        async with self.open_bus(make_transport, retry=retry) as bus:
            seen: list[tuple[int, float]] = []

            async def fails_once(message: Message) -> None:
                seen.append((message.attempt, time.monotonic()))
                if message.attempt == 1:
                    raise RuntimeError("later, please")

            await bus.subscribe(f"{topic}.delay", fails_once)
            await bus.publish(f"{topic}.delay", "x")
            await wait_until(lambda: len(seen) >= 2, self.timeout, "the delayed redelivery")
            (first, at1), (second, at2) = seen[:2]
            assert (first, second) == (1, 2)
            assert at2 - at1 >= delay * 0.9, f"redelivered after {at2 - at1:.3f}s, not {delay}s"

    async def test_headers_are_broker_native(self, make_transport: Any, topic: str) -> None:
        self.require(self.caps(make_transport), "headers")
        async with self.open_bus(make_transport, name="native") as bus:
            sent: list[Message] = []

            async def publish() -> None:
                sent.append(
                    await bus.publish(
                        f"{topic}.hdr", {"k": 1}, headers={"trace": "t-1"}, correlation_id="c-9"
                    )
                )

            try:
                body, headers = await self.capture_raw(bus.transport, f"{topic}.hdr", publish)
            except NotImplementedError:
                pytest.skip("headers declared but not proven: the backend lacks capture_raw")
        assert json.loads(body) == {"k": 1}, "the body is the payload alone"
        assert headers.get(H_ID) == sent[0].id
        assert headers.get(H_CORRELATION_ID) == "c-9"
        assert headers.get(H_SENDER) == "native"
        assert headers.get("trace") == "t-1"

    async def test_foreign_messages_reach_wildcard_subscribers(
        self, make_transport: Any, topic: str
    ) -> None:
        """A program that knows nothing of AMB publishes with the raw driver; subscribers of
        patterns (fan-out and, where there are groups, a group) still get it."""
        groups = self.caps(make_transport).consumer_groups
        async with self.open_bus(make_transport) as bus:
            one = await self.collect(bus, f"{topic}.orders.*")
            tail = await self.collect(bus, f"{topic}.>")
            grouped = (
                await self.collect(bus, f"{topic}.orders.*", group=f"{topic}-g") if groups else []
            )
            await self.inject_foreign(bus.transport, f"{topic}.orders.created", b'{"id": 7}')
            await wait_until(
                lambda: len(one) >= 1 and len(tail) >= 1 and (len(grouped) >= 1 or not groups),
                self.timeout,
                lambda: (
                    f"the foreign message: '*' got {len(one)}, '>' {len(tail)}, "
                    f"group {len(grouped)}"
                ),
            )
            for got in (one, tail, grouped):
                assert [(m.topic, m.payload) for m in got] in (
                    [],
                    [(f"{topic}.orders.created", {"id": 7})],
                )

    async def test_oversized_dead_letter_is_stored_reduced(
        self, make_transport: Any, topic: str
    ) -> None:
        """Undecodable bytes that fit the broker make a dead letter that does not (metadata,
        encodings): it is stored as an excerpt, marked, and the subscription goes on."""
        if self.caps(make_transport).max_message_size is None:
            pytest.skip("transport declares no max_message_size")
        async with self.open_bus(make_transport) as bus:
            limit = bus.transport.capabilities.max_message_size
            assert limit is not None
            handled = await self.collect(bus, f"{topic}.big")
            dead = await self.collect(bus, f"dlq.{topic}.>")
            # Fits as it is, but not with the letter's metadata (a few hundred bytes of headers).
            body = b"{not json " + b"x" * (limit - 210)
            await self.inject_foreign(bus.transport, f"{topic}.big", body)
            await self.inject_foreign(bus.transport, f"{topic}.big", b'{"after": 1}')
            await wait_until(lambda: len(dead) >= 1 and len(handled) >= 1, self.timeout, "both")
            letter = dead[0]
            assert letter.headers[H_DLQ_REASON] == "undecodable"
            assert letter.headers[H_DLQ_TRUNCATED] == str(len(body))
            assert isinstance(letter.payload, bytes) and body.startswith(letter.payload)
            assert 0 < len(letter.payload) < limit
            assert handled[0].payload == {"after": 1}

    async def test_dead_letter_that_cannot_be_stored_is_not_settled(
        self, make_transport: Any, topic: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A dead-letter handler that fails means "not stored": an at-least-once transport gets
        the message back (and the letter is stored the next time); an at-most-once one cannot, so
        it counts and logs the loss."""
        redelivers = self.caps(make_transport).at_least_once
        calls: list[str] = []

        async def store_second_time(dead: DeadLetter, bus: MessageBus) -> None:
            calls.append(dead.message.id)
            if len(calls) == 1:
                raise RuntimeError("dead-letter store is down")
            await publish_to_dlq(dead, bus)

        retry = RetryPolicy(max_attempts=1, initial_delay=0.05, max_delay=0.2, jitter=0)
        caplog.set_level(logging.ERROR, logger="amb")
        async with self.open_bus(
            make_transport, retry=retry, dead_letter_handlers=[store_second_time]
        ) as bus:

            async def rejects(message: Message) -> None:
                raise RejectMessage("no")

            await bus.subscribe(f"{topic}.undead", rejects, ack_wait=self.ack_wait)
            dead = await self.collect(bus, f"dlq.{topic}.>")
            await bus.publish(f"{topic}.undead", "letter")
            if redelivers:
                await wait_until(lambda: len(dead) >= 1, self.timeout, "the letter, stored later")
                assert [m.payload for m in dead] == ["letter"]
                assert len(calls) >= 2 and bus.dead_letters.lost == 0
            else:
                await wait_until(lambda: len(calls) >= 1, self.timeout, "the dead-letter attempt")
                await wait_until(lambda: bus.dead_letters.lost == 1, self.timeout, "the count")
                await anyio.sleep(self.quiet)
                assert dead == [] and len(calls) == 1
                assert any("LOST" in r.getMessage() for r in caplog.records), "logged loudly"
