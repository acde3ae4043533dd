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

from collections import Counter
from collections.abc import Callable

import anyio
import pytest

from amb_core import Message, MessageBus
from amb_core.testing.conformance import wait_until
from amb_core.testing.servers import ServerProcess
from amb_sqs import SQSTransport

from .latency import slow_endpoint

pytestmark = [pytest.mark.sqs, pytest.mark.anyio]
COUNT = 100


async def test_nothing_handled_is_received_again_through_a_slow_endpoint(
    moto_server: ServerProcess | None, namespace_url: Callable[..., str]
) -> None:
    """100 messages through a member with 50 handlers of 4 s each (longer than ``ack_wait=3``)
    and every request 0.5 s late: each is handled once, on its first receive. (The pollers keep
    polling meanwhile, so a message whose visibility ran out would be received again at once.)"""
    if moto_server is None:
        pytest.skip("delays requests to the fixture's moto server; AMB_SQS_URL points elsewhere")
    direct = namespace_url()
    seen: Counter[int] = Counter()
    attempts: Counter[int] = Counter()

    async def handle(message: Message) -> None:
        number = message.payload["i"]
        seen[number] += 1
        attempts[message.attempt] += 1
        await anyio.sleep(4)

    async with slow_endpoint(moto_server.port, 0.5) as port:
        slow = direct.replace(f"127.0.0.1:{moto_server.port}", f"127.0.0.1:{port}")
        async with (
            MessageBus(SQSTransport(slow, pollers=4)) as consumer,
            MessageBus(SQSTransport(direct)) as producer,
        ):
            await consumer.subscribe("jobs.run", handle, group="workers", ack_wait=3, concurrency=50)
            await producer.publish_many("jobs.run", [{"i": i} for i in range(COUNT)])
            await wait_until(lambda: len(seen) == COUNT, 60, f"all {COUNT} handled")
            # Anything whose visibility ran out comes back within one visibility timeout plus
            # a receive; a message handled again would show as a count of 2.
            await anyio.sleep(4)
    assert attempts == Counter({1: COUNT}), f"receive counts seen: {dict(attempts)}"
    assert [n for n, times in seen.items() if times > 1] == []
