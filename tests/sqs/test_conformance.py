"""The SQS transport passes AMB's conformance suite against a real SQS/SNS endpoint (moto's server
or ``AMB_SQS_URL``), in standard mode and in FIFO mode."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from amb_core.testing.conformance import TransportConformance
from amb_core.transport import Transport
from amb_sqs import SQSTransport

pytestmark = pytest.mark.sqs


async def inject_sns(transport: Transport, topic: str, body: bytes) -> None:
    """Publish as another program would: the raw driver, the SNS topic, only the ``amb-topic``
    attribute that routes it (and the base64 marker for bytes that are not text, which SNS
    cannot carry otherwise)."""
    assert isinstance(transport, SQSTransport)
    attributes = {"amb-topic": {"DataType": "String", "StringValue": topic}}
    try:
        text = body.decode()
    except UnicodeDecodeError:
        text = base64.b64encode(body).decode()
        attributes["amb-body-encoding"] = {"DataType": "String", "StringValue": "base64"}
    await transport.sns.publish(
        TopicArn=transport.topic_arn, Message=text, MessageAttributes=attributes
    )


class TestSQSConformance(TransportConformance):
    many = 400
    ack_wait = 1.0
    quiet = 0.5
    timeout = 30.0
    # SNS and SQS standard queues deliver at least once and document occasional extra copies (seen
    # here once in 400 under a loaded machine); the FIFO tests below allow none.
    duplicates_allowed = 4

    @pytest.fixture
    def make_transport(self, sqs_url: str) -> Callable[[], Transport]:
        return lambda: SQSTransport(sqs_url)

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        await inject_sns(transport, topic, body)


class TestSQSFifoConformance(TestSQSConformance):
    """FIFO topic and queues: per-key order (the ``ordered`` capability) on top of the rest."""

    many = 200
    duplicates_allowed = 0  # FIFO: deduplicated on publish, one consumer per message group

    @pytest.fixture
    def make_transport(self, sqs_url: str) -> Callable[[], Transport]:
        # Short polling: moto decides which FIFO message groups are busy when a long poll starts,
        # so a member's long poll cannot see a group another member just released.
        return lambda: SQSTransport(sqs_url, fifo=True, wait=0)

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        assert isinstance(transport, SQSTransport)
        attributes = {"amb-topic": {"DataType": "String", "StringValue": topic}}
        try:
            text = body.decode()
        except UnicodeDecodeError:
            text = base64.b64encode(body).decode()
            attributes["amb-body-encoding"] = {"DataType": "String", "StringValue": "base64"}
        await transport.sns.publish(
            TopicArn=transport.topic_arn,
            Message=text,
            MessageAttributes=attributes,
            MessageGroupId="foreign",
            MessageDeduplicationId=base64.b16encode(body).decode()[:128],
        )
