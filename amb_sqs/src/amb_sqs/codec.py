"""AMB's wire envelope on SNS/SQS: the body is the SNS ``Message`` string, metadata rides in
message attributes.

SNS and SQS cap a message at 10 attributes, whose names are restricted and whose values must be
non-empty text, and a body must be XML-safe text. So:

- When every header fits (at most 10, valid names, non-empty values), each header is one ``String``
  attribute, as the wire format says, readable by any SQS client.
- Otherwise ``amb-topic`` stays native (the subscriptions' filter policies need it) and the other
  headers travel as one JSON object in the ``amb-headers`` attribute.
- A body that is not XML-safe UTF-8 text (bytes payloads) is sent base64-encoded, marked by the
  header ``amb-body-encoding: base64``. Another program may use the same marker to send bytes.

A foreign program publishing to the namespace's SNS topic must set the ``amb-topic`` attribute (it
routes the message); a body alone, sent straight to a queue, is read as a message on the
subscription's own topic.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from amb_core.errors import DecodeError, InvalidTopicError, MessageTooLargeError
from amb_core.message import Message
from amb_core.topics import validate_topic
from amb_core.transport import decode_delivery
from amb_core.wire import H_TOPIC, encode

__all__ = [
    "ATTR_ENCODING",
    "ATTR_HEADERS",
    "MAX_SIZE",
    "from_sqs",
    "headers_of",
    "to_sns",
]

MAX_SIZE = 262_144
"""SNS's limit (256 KiB) on one message and on one ``PublishBatch`` in all: the body's UTF-8 bytes
plus attribute names, types and values. (SQS alone takes 1 MiB since 2025, but every AMB message
goes through SNS.)"""
MAX_ATTRIBUTES = 10
ATTR_HEADERS = "amb-headers"
ATTR_ENCODING = "amb-body-encoding"
_NAME = re.compile(r"^[A-Za-z0-9_-](?:[A-Za-z0-9_.-]{0,254}[A-Za-z0-9_-])?$")
_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _name_ok(name: str) -> bool:
    lowered = name.lower()
    return (
        _NAME.match(name) is not None
        and ".." not in name
        and not lowered.startswith(("aws.", "amazon."))
    )


def _attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def to_sns(message: Message) -> tuple[str, dict[str, dict[str, str]], int]:
    """The SNS ``Message`` text and ``MessageAttributes`` for ``message``, and its size as SNS and
    SQS count it: the UTF-8 bytes of the text (base64 text for a body that is not XML-safe), plus
    each attribute's name, data type (``String``) and value. A ``PublishBatch`` may carry at most
    :data:`MAX_SIZE` of these sizes in all.

    :raises MessageTooLargeError: over SNS's 256 KiB (with that count as its size).
    :raises ConfigurationError: for a payload that is neither JSON nor bytes.
    """
    body, headers = encode(message)
    try:
        text = body.decode()
        if _UNSAFE.search(text):
            raise ValueError("not XML-safe")
    except ValueError:
        text = base64.b64encode(body).decode()
        headers[ATTR_ENCODING] = "base64"
    size = len(text.encode()) if not text.isascii() else len(text)
    if len(headers) <= MAX_ATTRIBUTES and all(
        v and _name_ok(k) and not _UNSAFE.search(v) for k, v in headers.items()
    ):
        attributes = {k: _attribute(v) for k, v in headers.items()}
        for k, v in headers.items():
            size += len(k) + 6 + len(v.encode())
    else:
        topic = headers.pop(H_TOPIC)
        packed = json.dumps(headers, separators=(",", ":"))  # ASCII: always XML-safe
        attributes = {H_TOPIC: _attribute(topic), ATTR_HEADERS: _attribute(packed)}
        size += len(H_TOPIC) + len(ATTR_HEADERS) + 12 + len(topic.encode()) + len(packed)
    if size > MAX_SIZE:
        raise MessageTooLargeError(size, MAX_SIZE, message.topic)
    return text, attributes, size


def headers_of(attributes: Mapping[str, Any] | None) -> dict[str, str]:
    """The text headers of SQS ``MessageAttributes`` (binary ones are skipped), unpacked.

    :raises DecodeError: when ``amb-headers`` is not a JSON object of strings.
    """
    headers: dict[str, str] = {}
    if not attributes:
        return headers
    for name, attribute in attributes.items():
        value = attribute.get("StringValue")
        if value is not None:
            headers[name] = value
    packed = headers.pop(ATTR_HEADERS, None)
    if packed is not None:
        try:
            extra = json.loads(packed)
        except ValueError as exc:
            raise DecodeError(f"attribute {ATTR_HEADERS!r} is not JSON: {exc}") from None
        if not isinstance(extra, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
        ):
            raise DecodeError(f"attribute {ATTR_HEADERS!r} must be an object of strings")
        headers.update(extra)
    return headers


def from_sqs(
    record: Mapping[str, Any], topic: str, attempt: int
) -> tuple[Message, DecodeError | None]:
    """Decode one received SQS message; undecodable ones come back with the error set (and the
    raw bytes as payload) so that the bus dead-letters them. ``topic`` is the fallback when the
    message names none (another program sent it straight to the queue)."""
    text: str = record.get("Body", "")
    body = text.encode()
    try:
        headers = headers_of(record.get("MessageAttributes"))
        if headers.pop(ATTR_ENCODING, None) == "base64":
            try:
                body = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise DecodeError(f"body marked base64 is not base64: {exc}") from None
    except DecodeError as exc:
        return Message(topic=topic, payload=body, attempt=attempt), exc
    message, error = decode_delivery(body, headers, topic, attempt)
    if error is not None and headers.get(H_TOPIC):
        named = headers[H_TOPIC]
        try:
            message = Message(topic=validate_topic(named), payload=body, attempt=attempt)
        except InvalidTopicError:  # a foreign producer's bad topic: keep the fallback
            pass
    return message, error
