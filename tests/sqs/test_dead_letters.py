"""Dead letters that do not fit, or cannot be stored, against a real endpoint (issue 14, defect 2).

A foreign body of 1 MB sent straight to a group queue (SQS takes 1 MiB; SNS, which AMB publishes
through, 256 KiB) cannot be dead-lettered whole: SQS raises ``MessageTooLargeError`` with SNS's true
limit before sending, and the core's default handler stores a reduced letter instead. When storing
fails all the same, the message is nacked: SQS gives it back after the nack's delay (a visibility
timeout), and after ``max_attempts + redrive_margin`` receives its redrive policy moves it to the
namespace's native DLQ queue, so it neither vanishes nor loops for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from amb_core import Message, MessageBus
from amb_core.deadletter import H_DLQ_REASON, H_DLQ_TRUNCATED, DeadLetter, RetryPolicy
from amb_core.testing.conformance import FAST_RETRY, wait_until
from amb_sqs import SQSTransport
from amb_sqs.naming import group_queue_name

from .conftest import raw_client

pytestmark = [pytest.mark.sqs, pytest.mark.anyio]
TIMEOUT = 30.0


async def queue_of(sqs: Any, transport: SQSTransport, group: str, pattern: str) -> str:
    name = group_queue_name(transport.config.namespace, group, pattern, transport.config.fifo)
    return str((await sqs.get_queue_url(QueueName=name))["QueueUrl"])


async def test_a_1_mb_foreign_body_is_dead_lettered_reduced(sqs_url: str) -> None:
    """The issue's case: 1 MB that is not an AMB envelope, sent straight to a group queue. The
    letter on ``dlq.<topic>`` says ``undecodable`` and is marked as truncated (with the original
    size), and the queue goes on: a message sent after it is handled."""
    transport = SQSTransport(sqs_url)
    async with (
        MessageBus(transport, retry=FAST_RETRY) as bus,
        raw_client(transport, "sqs") as sqs,
    ):
        handled: list[Message] = []
        await bus.subscribe("orders.new", handled.append, group="shop")
        dead: list[Message] = []
        await bus.subscribe("dlq.orders.>", dead.append)
        queue = await queue_of(sqs, transport, "shop", "orders.new")
        body = "<order>" + "x" * 1_000_000 + "</order>"  # text SQS takes, not JSON
        await sqs.send_message(QueueUrl=queue, MessageBody=body)
        await sqs.send_message(QueueUrl=queue, MessageBody='{"sku": 7}')
        await wait_until(
            lambda: bool(dead and handled),
            TIMEOUT,
            lambda: f"dead={len(dead)} handled={len(handled)}",
        )
        letter = dead[0]
        assert letter.topic == "dlq.orders.new"
        assert letter.headers[H_DLQ_REASON] == "undecodable"
        assert letter.headers[H_DLQ_TRUNCATED] == str(len(body))
        assert isinstance(letter.payload, bytes) and 0 < len(letter.payload) <= 4096
        assert body.encode().startswith(letter.payload)
        assert [m.payload for m in handled] == [{"sku": 7}]
        await transport.delete_group("orders.new", "shop")


async def test_a_letter_that_cannot_be_stored_comes_back_paced_then_is_redriven(
    namespace_url: Callable[..., str],
) -> None:
    """A dead-letter handler that keeps failing: the message is not settled but nacked, so SQS
    gives it back after ``retry.max_delay`` (1 s here), never at once, and after
    ``max_attempts + redrive_margin`` receives (1 + 1) the redrive policy moves it to the native
    DLQ queue, where ``sweep_dead_letters`` finds it: nothing lost, no endless loop."""
    retry = RetryPolicy(max_attempts=1, initial_delay=0.01, max_delay=1.0, jitter=0)
    seen: list[float] = []

    async def refuse(dead: DeadLetter, bus: MessageBus) -> None:
        seen.append(time.monotonic())
        raise RuntimeError("the dead-letter store is down")

    url = namespace_url(redrive_margin="1")
    transport = SQSTransport(url)
    async with (
        MessageBus(transport, retry=retry, dead_letter_handlers=[refuse]) as bus,
        raw_client(transport, "sqs") as sqs,
    ):
        await bus.subscribe("pay.card", print, group="payers")
        await sqs.send_message(
            QueueUrl=await queue_of(sqs, transport, "payers", "pay.card"), MessageBody="not json"
        )
        await wait_until(lambda: len(seen) == 2, TIMEOUT, lambda: f"{len(seen)} of 2 attempts")
        assert seen[1] - seen[0] >= 0.9, "given back after the nack's delay, not at once"
        redriven: list[Message] = []
        deadline = time.monotonic() + TIMEOUT
        while not redriven and time.monotonic() < deadline:
            redriven = await transport.sweep_dead_letters(idle=1.0)
        assert [m.payload for m in redriven] == [b"not json"]
        assert len(seen) == 2, "the redrive policy ended the loop"
        await transport.delete_group("pay.card", "payers")
