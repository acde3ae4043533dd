"""Closing under cancellation, against a real endpoint: cancelling a subscription's close lets the
caller's cancellation through without cancelling the deletes of messages already handled (issue 14,
defect 8)."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from amb_core import Message
from amb_core.testing.conformance import wait_until
from amb_core.transport import SubscriptionSpec
from amb_sqs import SQSTransport

pytestmark = [pytest.mark.sqs, pytest.mark.anyio]
TIMEOUT = 30.0


async def test_cancelling_a_close_keeps_the_deletes_of_handled_messages(sqs_url: str) -> None:
    """A handled message is acked (its delete is in flight, held here by a botocore hook), then
    the subscription's close is cancelled while it waits for that delete. The cancellation reaches
    the caller, and the delete still goes out: cancelling it would bring the handled message back
    as a duplicate."""
    transport = SQSTransport(sqs_url)
    await transport.connect()
    try:
        sub = await transport.subscribe(SubscriptionSpec("jobs.done"))
        await transport.publish(Message(topic="jobs.done", payload=1))
        with anyio.fail_after(TIMEOUT):
            delivery = await sub.__anext__()
        entered = asyncio.Event()
        release = asyncio.Event()
        outcome: list[str] = []

        async def hold(**_: Any) -> None:
            entered.set()
            try:
                await release.wait()
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise
            outcome.append("sent")

        transport.sqs.meta.events.register("before-call.sqs.DeleteMessageBatch", hold)
        await delivery.ack()
        await wait_until(entered.is_set, TIMEOUT, "the delete under way")
        closer = asyncio.ensure_future(sub.aclose())
        pollers = sub._pollers  # type: ignore[attr-defined]
        await wait_until(lambda: all(t.done() for t in pollers), TIMEOUT, "receive loops ended")
        for _ in range(20):  # a few loop turns: the close moves on to wait for the delete
            await asyncio.sleep(0)
        assert not closer.done()
        closer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closer
        release.set()
        await wait_until(lambda: bool(outcome), TIMEOUT, "the delete's end")
        assert outcome == ["sent"]
    finally:
        await transport.aclose()
