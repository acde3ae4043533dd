"""The message every handler receives.

Immutable (attrs, frozen, slots) so that one message can be handed to many in-process subscribers
without copies; treat ``payload`` as read-only for the same reason. The bytes on the wire are described
in ``docs/wire-format.md`` and produced by :mod:`amb_core.wire`.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = ["EMPTY_HEADERS", "JSONValue", "Message", "build_message", "new_id", "new_message"]

JSONValue = Any
"""A value ``json.dumps`` accepts: dict, list, str, int, float, bool or None."""

EMPTY_HEADERS: Mapping[str, str] = {}

_PREFIX = os.urandom(8).hex()
_counter = itertools.count(1)


def _reseed() -> None:
    """A forked child gets a prefix of its own: it would otherwise repeat its parent's ids."""
    global _PREFIX, _counter
    _PREFIX = os.urandom(8).hex()
    _counter = itertools.count(1)


if hasattr(os, "register_at_fork"):  # not on Windows, where processes are spawned, never forked
    os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """A process-unique, globally improbable id: a random 64-bit prefix (16 hex digits) plus a
    decimal counter.

    Cheaper than ``uuid4()`` (a counter increment instead of reading the OS random source per
    message), which matters on the publish and receive hot paths; ``str`` of the counter costs
    two thirds of formatting it as hex.
    """
    return _PREFIX + str(next(_counter))


@attrs.frozen(slots=True, weakref_slot=False)
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

    @property
    def deadline(self) -> float | None:
        """The moment the message's budget runs out (a request's timeout travels this way): the
        same instant as :attr:`expires_at`."""
        return None if self.ttl is None else self.timestamp + self.ttl

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left until :attr:`deadline` (negative once past), or None without one."""
        if self.ttl is None:
            return None
        return self.timestamp + self.ttl - (time.time() if now is None else now)

    def expired(self, now: float | None = None) -> bool:
        """True when the message has a TTL and it has passed."""
        if self.ttl is None:
            return False
        return (time.time() if now is None else now) > self.timestamp + self.ttl

    def evolve(self, **changes: Any) -> Message:
        """A copy with some fields changed."""
        return attrs.evolve(self, **changes)


class _Unguarded:
    """Message's exact slot layout without the frozen guard, for :func:`build_message`.

    A frozen class sets each field in ``__init__`` through ``object.__setattr__`` (twelve calls, the
    largest cost of a message on the hot path); plain slot assignments cost a quarter of that. An
    instance is made bare (``object.__new__``), filled, and then becomes a :class:`Message` by
    ``__class__`` assignment, which CPython allows between classes of one slot layout (hence
    ``weakref_slot=False`` on Message). A function does this rather than an ``__init__``: calling a
    class runs its ``__init__`` through the type's call machinery, which costs a tenth of a message
    more than a plain function's frame.
    """

    __slots__ = Message.__slots__


_bare = object.__new__
_now = time.time


def _build_unguarded(
    topic: str,
    payload: JSONValue,
    headers: Mapping[str, str],
    id: str,
    correlation_id: str | None,
    reply_to: str | None,
    timestamp: float,
    sender: str | None,
    ttl: float | None,
    attempt: int,
    priority: int,
    key: str | None,
) -> Message:
    made: Any = _bare(_Unguarded)
    made.topic = topic
    made.payload = payload
    made.headers = headers
    made.id = id
    made.correlation_id = correlation_id
    made.reply_to = reply_to
    made.timestamp = timestamp
    made.sender = sender
    made.ttl = ttl
    made.attempt = attempt
    made.priority = priority
    made.key = key
    made.__class__ = Message
    return made  # type: ignore[no-any-return]


def _publish_unguarded(
    topic: str,
    payload: JSONValue,
    headers: Mapping[str, str],
    correlation_id: str | None,
    reply_to: str | None,
    sender: str | None,
    ttl: float | None,
    priority: int,
    key: str | None,
) -> Message:
    # _build_unguarded's steps, spelled out rather than called: one frame a message, not two
    made: Any = _bare(_Unguarded)
    made.topic = topic
    made.payload = payload
    made.headers = headers
    made.id = _PREFIX + str(next(_counter))  # new_id(), without its frame
    made.correlation_id = correlation_id
    made.reply_to = reply_to
    made.timestamp = _now()
    made.sender = sender
    made.ttl = ttl
    made.attempt = 1
    made.priority = priority
    made.key = key
    made.__class__ = Message
    return made  # type: ignore[no-any-return]


def _publish_constructed(
    topic: str,
    payload: JSONValue,
    headers: Mapping[str, str],
    correlation_id: str | None,
    reply_to: str | None,
    sender: str | None,
    ttl: float | None,
    priority: int,
    key: str | None,
) -> Message:
    return Message(
        topic,
        payload,
        headers,
        new_id(),
        correlation_id,
        reply_to,
        _now(),
        sender,
        ttl,
        1,
        priority,
        key,
    )


def _unguarded_works() -> bool:
    fields = ("t", None, EMPTY_HEADERS, "i", None, None, 0.0, None, None, 1, 0, None)
    try:
        made: Any = _build_unguarded(*fields)
        return type(made) is Message and made == Message(*fields)
    except TypeError:  # another interpreter or attrs layout: the attrs constructor serves
        return False


_FAST = _unguarded_works()
build_message: Callable[
    [
        str,
        JSONValue,
        Mapping[str, str],
        str,
        str | None,
        str | None,
        float,
        str | None,
        float | None,
        int,
        int,
        str | None,
    ],
    Message,
] = _build_unguarded if _FAST else Message
"""``build_message(topic, payload, headers, id, correlation_id, reply_to, timestamp, sender, ttl,
attempt, priority, key)``: a :class:`Message` from all twelve fields, positionally, at about a third
of the constructor's cost. For the bus's and the transports' hot paths; equal in every way to
``Message(...)`` with the same arguments (no defaults are filled in)."""

new_message: Callable[
    [
        str,
        JSONValue,
        Mapping[str, str],
        str | None,
        str | None,
        str | None,
        float | None,
        int,
        str | None,
    ],
    Message,
] = _publish_unguarded if _FAST else _publish_constructed
"""``new_message(topic, payload, headers, correlation_id, reply_to, sender, ttl, priority, key)``:
a message as a publisher sends it, with a fresh :func:`new_id`, the current time and attempt 1;
:func:`build_message` with those three filled in, in one frame (the id's own call costs as much as
a sixth of the message). For ``publish``'s hot path."""
