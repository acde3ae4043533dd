"""``amb docs module:bus``: the app's contract as an AsyncAPI 3.0 document others can read.

Read from the bus without connecting it: each subscription becomes a channel (its pattern as the
address; AMB's ``*`` and ``>`` wildcards stay literal, described in the channel), a ``receive``
operation (its consumer group as ``x-amb-group``), and a message whose payload schema is the JSON
Schema of the handler's declared payload type (:mod:`.typed`; an untyped handler's payload is any
JSON value). A handler whose return annotation is a type answers requests: its operation gets a
``reply`` with that type's schema, addressed by the request's ``amb-reply-to`` header. The server
comes from the URL with any credentials removed. AMB's metadata headers are described once as a
message trait (see docs/wire-format.md).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from .bus import MessageBus
from .typed import codec_for, signature_types

__all__ = ["asyncapi_document"]

_HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "amb-id": {"type": "string", "description": "unique message id"},
        "amb-ts": {"type": "string", "description": "publish time, epoch seconds"},
        "amb-correlation-id": {"type": "string", "description": "ties a reply to its request"},
        "amb-reply-to": {"type": "string", "description": "where the reply goes (requests)"},
        "amb-sender": {"type": "string", "description": "the publishing agent's name"},
        "amb-ttl": {"type": "string", "description": "seconds the message stays valid"},
    },
}
_ANY_JSON: dict[str, Any] = {"description": "any JSON value (the handler declares no type)"}


def _key(text: str) -> str:
    """An AsyncAPI component key (``^[A-Za-z0-9\\.\\-_]+$``) for ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text.replace("*", "star").replace(">", "rest"))


def _server(bus: MessageBus, url: str | None) -> dict[str, Any]:
    transport = bus.transport
    if url:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        if parts.port:
            host = f"{host}:{parts.port}"
        server: dict[str, Any] = {"host": host, "protocol": parts.scheme}
        if parts.path and parts.path != "/":
            server["pathname"] = parts.path
    else:
        server = {"host": "localhost", "protocol": transport.scheme or "memory"}
    server["description"] = f"{type(transport).__name__} ({transport.description})"
    return server


def _schema(kind: Any, shared: dict[str, Any]) -> dict[str, Any]:
    """``kind``'s JSON Schema; the named schemas it refers to go into ``shared``
    (``components.schemas``)."""
    if kind is None:
        return _ANY_JSON
    schema, named = codec_for(kind).schema("#/components/schemas/{model}")
    shared.update(named)
    return schema


def asyncapi_document(
    bus: MessageBus, *, title: str | None = None, version: str = "1.0.0", url: str | None = None
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``bus``'s subscriptions (see the module)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for index, subscriber in enumerate(bus.subscribers):
        pattern = subscriber.pattern
        channel_key = _key(pattern)
        if channel_key in channels:
            channel_key = f"{channel_key}_{index}"
        kind, _, returns = signature_types(subscriber.handler)
        handler_name = getattr(subscriber.handler, "__name__", f"handler{index}")
        message_key = _key(f"{channel_key}.{getattr(kind, '__name__', 'payload')}")
        channels[channel_key] = {
            "address": pattern,
            "description": (
                f"AMB pattern {pattern!r}: '*' matches one dot-separated token, '>' the rest"
            ),
            "messages": {
                message_key: {
                    "name": getattr(kind, "__name__", "payload"),
                    "contentType": "application/json",
                    "payload": _schema(kind, schemas),
                    "traits": [{"$ref": "#/components/messageTraits/ambHeaders"}],
                }
            },
        }
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_key}"},
            "messages": [{"$ref": f"#/channels/{channel_key}/messages/{message_key}"}],
            "summary": (subscriber.handler.__doc__ or handler_name).strip().splitlines()[0],
        }
        if subscriber.group:
            operation["x-amb-group"] = subscriber.group
        if returns is not None:
            reply_key = _key(f"{channel_key}.reply.{getattr(returns, '__name__', 'reply')}")
            messages[reply_key] = {
                "name": getattr(returns, "__name__", "reply"),
                "contentType": "application/json",
                "payload": _schema(returns, schemas),
            }
            operation["reply"] = {
                "address": {"location": "$message.header#/amb-reply-to"},
                "messages": [{"$ref": f"#/components/messages/{reply_key}"}],
            }
        operations[_key(f"{handler_name}_{index}")] = operation
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": title or bus.name or "AMB application",
            "version": version,
            "description": "Generated by amb docs from the app's subscriptions.",
        },
        "defaultContentType": "application/json",
        "servers": {"main": _server(bus, url)},
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "messageTraits": {"ambHeaders": {"headers": _HEADERS_SCHEMA}},
        },
    }
