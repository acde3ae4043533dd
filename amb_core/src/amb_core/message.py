"""The message every handler receives.

Immutable (attrs, frozen, slots) so that one message can be handed to many in-process subscribers
without copies; treat ``payload`` as read-only for the same reason. The bytes on the wire are described
in ``docs/wire-format.md`` and produced by :mod:`amb_core.wire`.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["EMPTY_HEADERS", "JSONValue", "Message", "new_id"]

JSONValue = Any
"""A value ``json.dumps`` accepts: dict, list, str, int, float, bool or None."""

EMPTY_HEADERS: Mapping[str, str] = {}

_PREFIX = os.urandom(8).hex()
_counter = itertools.count(1)


def new_id() -> str:
    """A process-unique, globally improbable id: a random 64-bit prefix plus a counter.

    Cheaper than ``uuid4()`` (a counter increment instead of reading the OS random source per
    message), which matters on the publish hot path.
    """
    return f"{_PREFIX}{next(_counter):x}"


@attrs.frozen(slots=True)
class Message:
    """One message on the bus.

    :param topic: where it was published (a concrete topic, never a pattern).
    :param payload: a JSON value, or ``bytes`` sent as they are.
    :param headers: user metadata, str to str; names starting with ``amb-`` are reserved.
    :param id: unique id, set by the publisher.
    :param correlation_id: ties a reply to its request.
    :param reply_to: the topic a reply goes to; set on requests.
    :param timestamp: publish time, seconds since the epoch.
    :param sender: optional name of the publishing agent.
    :param ttl: seconds the message stays valid after ``timestamp``; an expired message is
        dead-lettered, never handled.
    :param attempt: delivery count, 1 on the first delivery.
    :param priority: carried for handlers and routers; higher means more urgent.
    :param key: ordering key: messages with one key keep their order (Kafka partition key).
    """

    topic: str
    payload: JSONValue
    headers: Mapping[str, str] = EMPTY_HEADERS
    id: str = attrs.field(factory=new_id)
    correlation_id: str | None = None
    reply_to: str | None = None
    timestamp: float = attrs.field(factory=time.time)
    sender: str | None = None
    ttl: float | None = None
    attempt: int = 1
    priority: int = 0
    key: str | None = None

    @property
    def expires_at(self) -> float | None:
        """Epoch seconds after which the message is dead-lettered instead of handled."""
        return None if self.ttl is None else self.timestamp + self.ttl

    def expired(self, now: float | None = None) -> bool:
        """True when the message has a TTL and it has passed."""
        if self.ttl is None:
            return False
        return (time.time() if now is None else now) > self.timestamp + self.ttl

    def evolve(self, **changes: Any) -> Message:
        """A copy with some fields changed."""
        return attrs.evolve(self, **changes)
