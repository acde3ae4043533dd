"""A member keeps every message it holds invisible until it deletes it or hands it back, also when
the endpoint is slow (requests delayed through :mod:`tests.sqs.latency`): no message that was
handled is received a second time, so a native redrive (``maxReceiveCount``) can never dead-letter
a message that was handled fine.

Seen in the fault soak on moto under load: handled messages received up to 6 times. The heartbeat
extended one batch of 10 after another every ``ack_wait / 2`` and skipped handled messages waiting
for their (serial) delete; with each request taking a while, the time between two extensions of a
message exceeded its visibility.
"""

from __future__ import annotations

import uuid
from collections import Counter

import anyio
import pytest

from amb_core import Message, MessageBus
from amb_core.testing.conformance import wait_until
from amb_core.testing.servers import ServerProcess
from amb_sqs import SQSTransport

from .conftest import moto_url, with_namespace
from .latency import slow_endpoint

pytestmark = [pytest.mark.sqs, pytest.mark.anyio]
COUNT = 50


async def test_nothing_handled_is_received_again_through_a_slow_endpoint(
    moto_server: ServerProcess | None,
) -> None:
    """50 messages, each in one of 50 handlers of 6 s (twice ``ack_wait=3``), every request
    0.5 s late: each is handled once, on its first receive. (With every message in a handler the
    prefetch stays empty, so the poller keeps polling and would receive at once a message whose
    visibility ran out.)

    One poller: moto's ReceiveMessage checks and marks a message received without a lock, so two
    receives at once can both take it (seen in CI: one message in a first receive with a receive
    count of 2, the same message in another with 1, under load). A standard SQS queue may also hand out a
    message twice (at-least-once); that is not what this test is about."""
    if moto_server is None:
        pytest.skip("delays requests to the fixture's moto server; AMB_SQS_URL points elsewhere")
    namespace = f"t{uuid.uuid4().hex[:12]}"
    direct = moto_url(moto_server, namespace)
    seen: Counter[int] = Counter()
    attempts: Counter[int] = Counter()
    finished: list[int] = []

    async def handle(message: Message) -> None:
        number = message.payload["i"]
        seen[number] += 1
        attempts[message.attempt] += 1
        await anyio.sleep(6)  # the slow work itself (an LLM call), not a wait for a condition
        finished.append(number)

    async with slow_endpoint(moto_server.port, 0.5) as port:
        slow = with_namespace(
            f"sqs://?region=us-east-1&endpoint=http://127.0.0.1:{port}&wait=1", namespace
        )
        async with (
            MessageBus(SQSTransport(slow, pollers=1)) as consumer,
            MessageBus(SQSTransport(direct)) as producer,
        ):
            await consumer.subscribe(
                "jobs.run", handle, group="workers", ack_wait=3, concurrency=COUNT
            )
            await producer.publish_many("jobs.run", [{"i": i} for i in range(COUNT)])
            await wait_until(lambda: len(finished) >= COUNT, 60, f"all {COUNT} handled")
            # A message whose delete came too late would be received again within a visibility
            # timeout: watch for one (an absence cannot be awaited).
            await anyio.sleep(3)
    assert attempts == Counter({1: COUNT}), f"receive counts seen: {dict(attempts)}"
    assert [n for n, times in seen.items() if times > 1] == []
