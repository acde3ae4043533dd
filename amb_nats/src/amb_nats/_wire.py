"""AMB's wire envelope written straight into a NATS header block, skipping the intermediate dict.

Equal to :func:`amb_core.wire.encode` (minus ``amb-topic``, which the subject carries), as the tests
check; messages whose user headers use reserved names (``amb-*``, ``content-type``) or need cleaning
take the generic path (``encode`` + the client's header encoder), which resolves them the same way.
"""

from __future__ import annotations

from amb_core.message import Message
from amb_core.wire import JSON, encode_payload

from ._client import KEY_PATTERN, clean_value, known_keys

__all__ = ["header_text"]


def header_text(message: Message) -> tuple[bytes, str] | None:
    """``(body, header lines)`` for ``message``, or None when the generic path must be used."""
    parts: list[str] = []
    user = message.headers
    if user:
        valid = known_keys()
        for key, value in user.items():
            if key[:4] == "amb-" or key == "content-type":
                return None
            if key not in valid:
                if not key or not KEY_PATTERN.fullmatch(key):
                    return None  # the generic path skips or rejects it, as nats-py does
                valid.add(key)
            parts.append(f"{key}: {clean_value(value)}\r\n")
    body, content_type = encode_payload(message.payload)
    parts.append(f"amb-id: {clean_value(message.id)}\r\namb-ts: {message.timestamp!r}\r\n")
    if content_type != JSON:
        parts.append(f"content-type: {content_type}\r\n")
    if message.correlation_id is not None:
        parts.append(f"amb-correlation-id: {clean_value(message.correlation_id)}\r\n")
    if message.reply_to is not None:
        parts.append(f"amb-reply-to: {clean_value(message.reply_to)}\r\n")
    if message.sender is not None:
        parts.append(f"amb-sender: {clean_value(message.sender)}\r\n")
    if message.ttl is not None:
        parts.append(f"amb-ttl: {message.ttl!r}\r\n")
    if message.priority:
        parts.append(f"amb-priority: {message.priority}\r\n")
    if message.key is not None:
        parts.append(f"amb-key: {clean_value(message.key)}\r\n")
    return body, "".join(parts)
