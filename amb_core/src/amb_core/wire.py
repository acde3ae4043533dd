"""The wire envelope: how a :class:`~amb_core.message.Message` becomes bytes plus headers, and back.

The body is the payload alone (JSON by default), and metadata travels as broker-native headers, so
that a program in any language can publish plain JSON with no headers at all and be understood, and
can read AMB's messages without a library. ``docs/wire-format.md`` is the specification; this module
is its implementation. Transports without native headers (Redis pub/sub) use :func:`pack`, which
prefixes the headers as one JSON line.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ._json import dumps, loads
from .errors import ConfigurationError, DecodeError
from .message import Message, build_message, new_id

__all__ = [
    "CONTENT_TYPE",
    "H_CORRELATION_ID",
    "H_ID",
    "H_KEY",
    "H_PRIORITY",
    "H_REPLY_TO",
    "H_SENDER",
    "H_TIMESTAMP",
    "H_TOPIC",
    "H_TTL",
    "JSON",
    "OCTET_STREAM",
    "PACK_MAGIC",
    "RESERVED_PREFIX",
    "TEXT",
    "decode",
    "decode_packed",
    "encode",
    "encode_payload",
    "pack",
    "unpack",
]

RESERVED_PREFIX = "amb-"
H_ID = "amb-id"
H_TOPIC = "amb-topic"
H_TIMESTAMP = "amb-ts"
H_CORRELATION_ID = "amb-correlation-id"
H_REPLY_TO = "amb-reply-to"
H_SENDER = "amb-sender"
H_TTL = "amb-ttl"
H_PRIORITY = "amb-priority"
H_KEY = "amb-key"
CONTENT_TYPE = "content-type"
JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
TEXT = "text/plain"
PACK_MAGIC = b"AMB1"

_METADATA = frozenset(
    {
        H_ID,
        H_TOPIC,
        H_TIMESTAMP,
        H_CORRELATION_ID,
        H_REPLY_TO,
        H_SENDER,
        H_TTL,
        H_PRIORITY,
        H_KEY,
        CONTENT_TYPE,
    }
)


def encode_payload(payload: Any) -> tuple[bytes, str]:
    """The payload as body bytes and its content type.

    :raises ConfigurationError: when the payload is not bytes and not JSON-serialisable.
    """
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload), OCTET_STREAM
    try:
        return dumps(payload).encode(), JSON
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"payload is not JSON-serialisable: {exc}") from None


def encode(message: Message) -> tuple[bytes, dict[str, str]]:
    """The message as ``(body, headers)``; user headers are copied as they are."""
    body, content_type = encode_payload(message.payload)
    headers: dict[str, str] = dict(message.headers)
    headers[H_ID] = message.id
    headers[H_TOPIC] = message.topic
    headers[H_TIMESTAMP] = repr(message.timestamp)
    if content_type != JSON:
        headers[CONTENT_TYPE] = content_type
    if message.correlation_id is not None:
        headers[H_CORRELATION_ID] = message.correlation_id
    if message.reply_to is not None:
        headers[H_REPLY_TO] = message.reply_to
    if message.sender is not None:
        headers[H_SENDER] = message.sender
    if message.ttl is not None:
        headers[H_TTL] = repr(message.ttl)
    if message.priority:
        headers[H_PRIORITY] = str(message.priority)
    if message.key is not None:
        headers[H_KEY] = message.key
    return body, headers


def _number(name: str, raw: str, kind: type[float] | type[int]) -> Any:
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise DecodeError(f"header {name!r} is not a number: {raw!r}") from None


def _payload(body: bytes, content_type: str | None) -> Any:
    if content_type is None or content_type.startswith(JSON):
        try:
            return loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DecodeError(f"body is not valid JSON: {exc}") from None
    if content_type.startswith(TEXT):
        try:
            return bytes(body).decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"body is not valid UTF-8 text: {exc}") from None
    return bytes(body)


def decode(
    body: bytes, headers: Mapping[str, str] | None, topic: str, *, attempt: int = 1
) -> Message:
    """Read a message from a body and headers as a broker delivered them.

    ``topic`` is where the broker delivered it; an ``amb-topic`` header wins (transports that map
    topics onto fewer broker objects, like SNS/SQS, need that). Headers a foreign producer left out
    get defaults: a fresh id, the current time, JSON content.

    Written for the receive hot path: one ``get`` per header, positional construction, and the
    user-header copy only when there are user headers (most messages carry none).

    :raises DecodeError: when the body does not parse as its content type says, or a header is bad.
    """
    if not headers:
        return build_message(
            topic,
            _payload(body, None),
            {},
            new_id(),
            None,
            None,
            time.time(),
            None,
            None,
            attempt,
            0,
            None,
        )
    get = headers.get
    payload = _payload(body, get(CONTENT_TYPE))
    user: dict[str, str] = {}
    for name in headers:
        if name not in _METADATA:
            user = {k: v for k, v in headers.items() if k not in _METADATA}
            break
    timestamp = get(H_TIMESTAMP)
    ttl = get(H_TTL)
    priority = get(H_PRIORITY)
    return build_message(
        get(H_TOPIC) or topic,
        payload,
        user,
        get(H_ID) or new_id(),
        get(H_CORRELATION_ID),
        get(H_REPLY_TO),
        (timestamp is not None and _number(H_TIMESTAMP, timestamp, float)) or time.time(),
        get(H_SENDER),
        None if ttl is None else _number(H_TTL, ttl, float),
        attempt,
        (priority is not None and _number(H_PRIORITY, priority, int)) or 0,
        get(H_KEY),
    )


def pack(message: Message) -> bytes:
    """The message as one byte string, for brokers without native headers.

    Layout: ``AMB1`` + the headers as a one-line JSON object + ``\\n`` + the body.
    """
    body, headers = encode(message)
    return PACK_MAGIC + dumps(headers).encode() + b"\n" + body


def unpack(data: bytes) -> tuple[bytes, dict[str, str]]:
    """Split :func:`pack` output into ``(body, headers)``; other bytes are a bare body.

    A foreign producer's plain JSON therefore reads as a payload with default metadata.

    :raises DecodeError: when the data starts like a packed envelope but its header line is bad.
    """
    if not data.startswith(PACK_MAGIC):
        return data, {}
    end = data.find(b"\n")
    if end < 0:
        raise DecodeError("packed envelope has no end of its header line")
    try:
        headers = loads(data[len(PACK_MAGIC) : end])
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"packed envelope header is not JSON: {exc}") from None
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise DecodeError("packed envelope header must be an object of strings")
    return data[end + 1 :], headers


def decode_packed(data: bytes, topic: str, *, attempt: int = 1) -> Message:
    """:func:`unpack` then :func:`decode`.

    :raises DecodeError: as those do.
    """
    body, headers = unpack(data)
    return decode(body, headers, topic, attempt=attempt)
