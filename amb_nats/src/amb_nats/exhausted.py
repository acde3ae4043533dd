"""The dead-letter path for JetStream messages whose deliveries ran out without the bus seeing them.

The bus dead-letters on its own count: at attempt ``max_attempts`` a failing handler's message goes to
``dlq.<topic>``, and ``max_deliver`` is one more than that as a spare. When consumers *die* (or stall
past ``ack_wait``) during the last deliveries, no handler ever fails and the server simply stops
delivering: it announces that on ``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>``.
Each subscription with a delivery limit listens there, reads the message back from the stream, and
publishes it to ``dlq.<topic>`` with the same headers the bus's default dead-letter handler writes
(reason ``max_attempts``). Every member of a group hears the advisory; the dead letter's
``Nats-Msg-Id`` (derived from the message id) makes JetStream store it once. A letter that would not
fit the server's ``max_payload`` with its metadata is stored reduced, as the bus's default handler
stores one (:func:`amb_core.deadletter.reduced`: an excerpt of the body, marked
``amb-dlq-truncated``, without the user headers).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from amb_core.deadletter import (
    DLQ_PREFIX,
    H_DLQ_AT,
    H_DLQ_ATTEMPTS,
    H_DLQ_ERROR,
    H_DLQ_ORIGINAL_ID,
    H_DLQ_REASON,
    H_DLQ_TOPIC,
    H_DLQ_TRUNCATED,
    dlq_topic,
    reduced,
)
from amb_core.message import Message
from amb_core.transport import decode_delivery
from amb_core.wire import H_TOPIC, encode

from ._client import header_block_size

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

    from .jetstream import Streams

__all__ = ["ADVISORY", "watch_exhausted"]

log = logging.getLogger("amb.nats")
ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
MSG_ID_HEADER = "Nats-Msg-Id"


def _wire(dead: Message, original_id: str) -> tuple[bytes, dict[str, str]]:
    body, headers = encode(dead)
    del headers[H_TOPIC]
    headers[MSG_ID_HEADER] = f"{original_id}.dlq"  # stored once, whoever hears the advisory
    return body, headers


async def dead_letter_stored(
    js: JetStreamContext, streams: Streams, stream: str, seq: int, deliveries: int, limit: int
) -> None:
    """Read message ``seq`` of ``stream`` and publish it as a dead letter (reduced when it would
    exceed ``limit``, the server's ``max_payload``)."""
    raw = await js.get_msg(stream, seq)
    headers = dict(raw.headers or {})
    headers.pop(MSG_ID_HEADER, None)
    topic = (raw.subject or "")[streams.skip :]
    original, _ = decode_delivery(raw.data or b"", headers, topic, deliveries)
    if original.topic.startswith(DLQ_PREFIX):
        log.error("a dead letter on %s ran out of deliveries; dropped", original.topic)
        return
    dlq_headers = {
        H_DLQ_REASON: "max_attempts",
        H_DLQ_ERROR: (
            f"JetStream's delivery limit ({deliveries}) was reached without an "
            "acknowledgement: the consumers died or stalled during the last attempts"
        ),
        H_DLQ_ATTEMPTS: str(deliveries),
        H_DLQ_TOPIC: original.topic,
        H_DLQ_ORIGINAL_ID: original.id,
        H_DLQ_AT: repr(time.time()),
    }
    fields: dict[str, Any] = {
        "correlation_id": original.correlation_id,
        "key": original.key,
        "sender": original.sender,
    }
    topic = dlq_topic(original.topic)
    dead = Message(topic, original.payload, {**original.headers, **dlq_headers}, **fields)
    body, wire_headers = _wire(dead, original.id)
    if len(body) + header_block_size(wire_headers) > limit:
        whole = raw.data or b""  # the body as stored: the encoded payload
        log.warning(
            "dead letter of %s (%d bytes) is too large for the server (max_payload %d): "
            "storing an excerpt",
            original.id,
            len(whole),
            limit,
        )
        dlq_headers[H_DLQ_TRUNCATED] = str(len(whole))
        dead = Message(topic, reduced(whole, limit), dlq_headers, **fields)
        body, wire_headers = _wire(dead, original.id)
    await streams.ensure(dead.topic)
    await js.publish(streams.subject(dead.topic), body, headers=wire_headers)
    log.warning(
        "message %s on %s ran out of deliveries (%d); dead-lettered",
        original.id,
        original.topic,
        deliveries,
    )


async def watch_exhausted(
    nc: Any, js: JetStreamContext, streams: Streams, stream: str, consumer: str
) -> Any:
    """Subscribe to the consumer's MAX_DELIVERIES advisories; returns the nats-py subscription."""

    async def on_advisory(msg: Any) -> None:
        try:
            event = json.loads(msg.data)
            await dead_letter_stored(
                js,
                streams,
                stream,
                int(event["stream_seq"]),
                int(event.get("deliveries", 0)),
                nc.max_payload,
            )
        except Exception as exc:  # never let an advisory break the connection's dispatcher
            log.error("dead-lettering an exhausted message of %s failed: %r", stream, exc)

    return await nc.subscribe(f"{ADVISORY}.{stream}.{consumer}", cb=on_advisory)
