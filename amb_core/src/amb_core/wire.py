"""The wire envelope: how a :class:`~amb_core.message.Message` becomes bytes plus headers, and back.

The body is the payload alone (JSON by default), and metadata travels as broker-native headers, so
that a program in any language can publish plain JSON with no headers at all and be understood, and
can read AMB's messages without a library. ``docs/wire-format.md`` is the specification; this module
is its implementation. Transports without native headers (Redis pub/sub) use :func:`pack`, which
prefixes the headers as one JSON line.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any

from ._json import dumps, loads
from .errors import ConfigurationError, DecodeError
from .message import EMPTY_HEADERS, Message, build_message, new_id

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
    "decode_lines",
    "decode_packed",
    "decode_pairs",
    "encode",
    "encode_payload",
    "format_timestamp",
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


_stamp: tuple[float, str] = (0.0, "0.0")  # the last timestamp formatted, and its text


def format_timestamp(timestamp: float) -> str:
    """``timestamp`` as the ``amb-ts`` header (``repr``: the shortest text that reads back equal).

    The last result is remembered: the messages of one batch share one timestamp object, so a batch
    formats it once (``repr`` of a float costs about as much as the rest of the headers together).
    """
    global _stamp
    last = _stamp
    if last[0] is timestamp:
        return last[1]
    text = repr(timestamp)
    _stamp = (timestamp, text)
    return text


def encode(message: Message) -> tuple[bytes, dict[str, str]]:
    """The message as ``(body, headers)``; user headers are copied as they are.

    :raises ConfigurationError: when the payload is not bytes and not JSON-serialisable.
    """
    body, content_type = encode_payload(message.payload)
    headers: dict[str, str] = {
        **message.headers,
        H_ID: message.id,
        H_TOPIC: message.topic,
        H_TIMESTAMP: format_timestamp(message.timestamp),
    }
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


_FIELD = {
    H_TOPIC: 0,
    CONTENT_TYPE: 1,
    H_ID: 3,
    H_CORRELATION_ID: 4,
    H_REPLY_TO: 5,
    H_TIMESTAMP: 6,
    H_SENDER: 7,
    H_TTL: 8,
    H_PRIORITY: 10,
    H_KEY: 11,
}
"""Each metadata header's position among :func:`build_message`'s arguments (``content-type`` waits
in the payload's place until the body is read)."""
_field_of = _FIELD.get
_time = time.time


def _number(name: str, raw: str, kind: type[float] | type[int]) -> Any:
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise DecodeError(f"header {name!r} is not a number: {raw!r}") from None


def _not_json(exc: Exception) -> DecodeError:
    return DecodeError(f"body is not valid JSON: {exc}")


def _payload(body: bytes, content_type: str | None) -> Any:
    if content_type is None or content_type.startswith(JSON):
        try:
            return loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _not_json(exc) from None
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

    :raises DecodeError: when the body does not parse as its content type says, or a header is bad.
    """
    return decode_pairs(body, headers.items() if headers else None, topic, attempt)


def decode_pairs(
    body: bytes,
    pairs: Collection[tuple[str, str | bytes | None]] | None,
    topic: str,
    attempt: int = 1,
) -> Message:
    """:func:`decode` for headers as ``(name, value)`` pairs, values text or UTF-8 bytes (Kafka's
    record headers, as the driver hands them over); a header named twice keeps its last value, an
    absent value (``None``) reads as empty, undecodable bytes as replacement characters.

    Written for the receive hot path: one pass over the headers puts each metadata value straight
    into its argument of :func:`build_message` (one lookup per header, not one per field), and
    collects the user headers in the same pass.

    :raises DecodeError: as :func:`decode` does.
    """
    if not pairs:  # a foreign producer's plain JSON: every field a default, no field list
        try:
            payload = loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _not_json(exc) from None
        return build_message(
            topic,
            payload,
            EMPTY_HEADERS,
            new_id(),
            None,
            None,
            _time(),
            None,
            None,
            attempt,
            0,
            None,
        )
    # topic, payload (content-type first), headers, id, correlation_id, reply_to, timestamp,
    # sender, ttl, attempt, priority, key: build_message's arguments.
    fields: list[Any] = [None, None, None, None, None, None, None, None, None, attempt, None, None]
    user: dict[str, str] = {}
    try:
        for name, value in pairs:
            if type(value) is not str:
                value = value.decode() if value is not None else ""  # type: ignore[union-attr]
            index = _field_of(name)
            if index is None:
                user[name] = value
            else:
                fields[index] = value
    except UnicodeDecodeError:
        return decode_pairs(body, _replacing(pairs), topic, attempt)
    fields[2] = user
    return _built(fields, body, topic)


def decode_lines(
    body: bytes, text: str, topic: str, attempt: int = 1, reply_to: str | None = None
) -> Message:
    """:func:`decode` for headers written as text lines, ``Name: value`` separated by CRLF (a
    NATS header block after its status line): one pass from the text to the fields, with no
    list or dict of headers in between. Values lose surrounding whitespace; a line without a
    colon, or whose name is empty, non-ASCII, unprintable or holds a space, is skipped; a name
    given twice keeps its last value. ``reply_to`` is the default of ``amb-reply-to`` (a
    broker's native reply subject), which a header of that name overrides.

    :raises DecodeError: as :func:`decode` does.
    """
    fields: list[Any] = [
        None,
        None,
        None,
        None,
        None,
        reply_to,
        None,
        None,
        None,
        attempt,
        None,
        None,
    ]
    user: dict[str, str] = {}
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            continue
        index = _field_of(name)
        if index is None:
            name = name.strip()
            if not name or not name.isascii() or not name.isprintable() or " " in name:
                continue
            index = _field_of(name)
            if index is None:
                user[name] = value.strip()
                continue
        fields[index] = value.strip()
    fields[2] = user
    return _built(fields, body, topic)


def _built(fields: list[Any], body: bytes, topic: str) -> Message:
    """The message from :func:`build_message`'s arguments as read from the headers (None where
    absent, ``content-type`` in the payload's place): defaults filled, body and numbers read."""
    if not fields[0]:
        fields[0] = topic
    content_type = fields[1]
    if content_type is None:  # JSON, the usual case: _payload's first branch, inline
        try:
            fields[1] = loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _not_json(exc) from None
    else:
        fields[1] = _payload(body, content_type)
    if not fields[3]:
        fields[3] = new_id()
    timestamp, ttl, priority = fields[6], fields[8], fields[10]
    try:
        fields[6] = (timestamp is not None and float(timestamp)) or _time()
        if ttl is not None:
            fields[8] = float(ttl)
        fields[10] = (priority is not None and int(priority)) or 0
    except ValueError:
        for name, raw, kind in ((H_TIMESTAMP, timestamp, float), (H_TTL, ttl, float)):
            if raw is not None:
                _number(name, raw, kind)
        raise DecodeError(f"header {H_PRIORITY!r} is not a number: {priority!r}") from None
    return build_message(*fields)


def _replacing(
    pairs: Collection[tuple[str, str | bytes | None]],
) -> list[tuple[str, str | bytes | None]]:
    """The pairs with undecodable bytes values read as replacement characters."""
    return [(n, v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for n, v in pairs]


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
