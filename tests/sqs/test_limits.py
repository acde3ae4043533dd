"""Size limits against a real endpoint: every message and every ``PublishBatch`` stays within what
SNS counts (256 KiB of body bytes, base64 for bytes that are not text, plus attribute names, types
and values), and a message over it raises ``MessageTooLargeError`` with the true limit before
anything is sent, on every publish path.

moto checks only a single body's length, so the batch test reads the requests the transport makes
(botocore's ``before-parameter-build`` event) instead of relying on moto to refuse them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from amb_core import Message, MessageBus
from amb_core.errors import MessageTooLargeError
from amb_core.testing.conformance import wait_until
from amb_sqs import SQSTransport
from amb_sqs.codec import MAX_SIZE

pytestmark = [pytest.mark.sqs, pytest.mark.anyio]
TIMEOUT = 30.0


def request_size(entry: dict[str, Any]) -> int:
    """One ``PublishBatch`` entry's size as SNS counts it: body bytes plus, per attribute, its
    name, data type and value."""
    size = len(entry["Message"].encode())
    for name, attribute in entry.get("MessageAttributes", {}).items():
        value = attribute["StringValue"]
        size += len(name.encode()) + len(attribute["DataType"]) + len(value.encode())
    return size


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
async def test_publish_batches_stay_within_the_aggregate_limit(
    namespace_url: Callable[..., str], fifo: bool
) -> None:
    """SNS refuses a whole ``PublishBatch`` whose entries add up to more than 256 KiB
    (``BatchRequestTooLong``), not only a single message over it: ten messages of 100 kB each
    must go in batches of at most two, and all of them arrive."""
    transport = SQSTransport(namespace_url(), fifo=fifo, wait=0 if fifo else 1)
    async with MessageBus(transport) as bus:
        batches: list[list[int]] = []

        def record(params: dict[str, Any], **_: Any) -> None:
            batches.append([request_size(e) for e in params["PublishBatchRequestEntries"]])

        transport.sns.meta.events.register("before-parameter-build.sns.PublishBatch", record)
        got: list[Message] = []
        await bus.subscribe("big.batch", got.append)
        payloads = [f"{i}:" + "x" * 100_000 for i in range(10)]
        await bus.publish_many("big.batch", payloads)
        await wait_until(lambda: len(got) == 10, TIMEOUT, lambda: f"{len(got)} of 10 arrived")
        assert sorted(m.payload for m in got) == sorted(payloads)
        assert sum(len(b) for b in batches) == 10
        assert all(sum(b) <= MAX_SIZE for b in batches), [sum(b) for b in batches]
        assert max(len(b) for b in batches) == 2, "packed as full as the limit allows"


async def test_publish_many_with_one_too_large_sends_none(sqs_url: str) -> None:
    """A batch holding one message over the limit raises before anything is queued: the messages
    before it are not left waiting to go out with some later publish."""
    async with MessageBus(SQSTransport(sqs_url)) as bus:
        got: list[Any] = []
        await bus.subscribe("some.topic", lambda m: got.append(m.payload))
        with pytest.raises(MessageTooLargeError) as caught:
            await bus.publish_many("some.topic", ["first", "y" * MAX_SIZE])
        assert caught.value.limit == MAX_SIZE
        await bus.publish("some.topic", "later")
        await wait_until(lambda: "later" in got, TIMEOUT, "the later message")
        await anyio.sleep(1.0)  # proving that "first" does NOT arrive
        assert got == ["later"]


@pytest.mark.parametrize("many", [False, True], ids=["publish", "publish_many"])
async def test_bytes_count_as_their_base64_text(sqs_url: str, many: bool) -> None:
    """Bytes that are not text travel base64-encoded, a third larger: 200,000 of them are over
    the limit though the same number of text bytes is not. The error names SNS's true limit (the
    declared ``max_message_size``) and the size SNS would count."""
    transport = SQSTransport(sqs_url)
    assert transport.capabilities.max_message_size == MAX_SIZE == 262_144
    async with MessageBus(transport) as bus:
        got: list[Any] = []
        await bus.subscribe("size.check", lambda m: got.append(m.payload))
        binary = b"\xff" * 200_000
        send = (
            bus.publish_many("size.check", [binary]) if many else bus.publish("size.check", binary)
        )
        with pytest.raises(MessageTooLargeError) as caught:
            await send
        assert caught.value.limit == MAX_SIZE
        assert caught.value.size > 200_000 * 4 // 3, "counted as its base64 text"
        assert f"accepts {MAX_SIZE}" in str(caught.value)
        text = "x" * 200_000
        await (bus.publish_many("size.check", [text]) if many else bus.publish("size.check", text))
        await wait_until(lambda: got == [text], TIMEOUT, "the text message under the limit")
