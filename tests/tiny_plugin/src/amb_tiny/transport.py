"""A tiny transport: the smallest complete AMB backend, the worked example of
``docs/writing-a-backend.md`` (which shows this file whole; a test keeps the two identical).

Its broker is an in-process object, :class:`TinyBroker`, standing in for a server and the driver
that talks to it: transports created over one broker talk to each other, a record reaches every
subscription whose pattern matches its topic, the members of a consumer group share one queue, and
:meth:`TinyBroker.kill` / :meth:`TinyBroker.start` make it crash and come back as a server would.
The transport reaches the broker only the way a driver reaches a server, and AMB only through its
public contract (:mod:`amb_core.transport`), so a backend for a real broker has this shape with the
driver's calls in place of the broker's.

It declares what the conformance suite proves for it (``tests/core/test_conformance_tiny.py``):
consumer groups, order, and a size limit. It is at most once (a record handed out is gone, and a
crash loses what waits), so the core retries a failing handler in-process; it keeps nothing to
replay, so ``start="earliest"`` and listing dead letters are refused; request/reply goes through the
core's inbox.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

import anyio
import attrs

from amb_core.errors import (
    BrokerUnavailableError,
    ConnectError,
    MessageTooLargeError,
    NotConnectedError,
    TransportError,
    UnsupportedError,
)
from amb_core.message import Message
from amb_core.options import parse_options
from amb_core.topics import matcher
from amb_core.transport import (
    Capabilities,
    ConnectionState,
    Delivery,
    Subscription,
    SubscriptionSpec,
    Transport,
    decode_delivery,
)
from amb_core.wire import encode

__all__ = [
    "TinyBroker",
    "TinyConnectError",
    "TinyError",
    "TinyMessageTooLargeError",
    "TinyTransport",
    "TinyUnavailableError",
]

Record = tuple[str, bytes, dict[str, str]]
"""What the broker stores: topic, body and headers, as a producer (AMB or not) sent them."""


def record_size(body: bytes, headers: dict[str, str]) -> int:
    """What counts against the broker's limit: the body and every header name and value."""
    return len(body) + sum(len(k.encode()) + len(v.encode()) for k, v in headers.items())


# -- the broker: for a real backend, the server and its driver -----------------------------------


class _Queue:
    """The records waiting for one fan-out subscription, or for all members of one group."""

    def __init__(self, match: Callable[[str], bool]) -> None:
        self.match = match
        self.records: deque[Record] = deque()
        self.members = 0
        self.lost = False  # the broker crashed and forgot this queue
        self._wakeup = anyio.Event()

    def put(self, record: Record) -> None:
        self.records.append(record)
        self.wake()

    def wake(self) -> None:
        self._wakeup.set()

    async def take(self, closed: Callable[[], bool]) -> Record | None:
        """The next record, waiting for one; None once ``closed()``.

        :raises ConnectionError: once the broker crashed (the driver's error, not AMB's).
        """
        while True:
            if self.lost:
                raise ConnectionError("connection to the tiny broker lost")
            if closed():
                return None
            if self.records:
                return self.records.popleft()
            if self._wakeup.is_set():  # spent by an earlier wake-up: wait for the next one
                self._wakeup = anyio.Event()
            await self._wakeup.wait()


class TinyBroker:
    """An in-process broker that transports share.

    :param limit: the largest record it takes, in bytes (body plus header names and values).
    """

    _named: ClassVar[dict[str, TinyBroker]] = {}

    def __init__(self, limit: int = 1024 * 1024) -> None:
        self.limit = limit
        self.up = True
        self._fanout: list[_Queue] = []
        self._groups: dict[tuple[str, str], _Queue] = {}
        self._watchers: list[Callable[[bool], None]] = []

    @classmethod
    def named(cls, name: str) -> TinyBroker:
        """The process-wide broker called ``name``, created on first use."""
        if name not in cls._named:
            cls._named[name] = cls()
        return cls._named[name]

    def _check_up(self) -> None:
        if not self.up:
            raise ConnectionError("the tiny broker is down")

    def send(self, topic: str, body: bytes, headers: dict[str, str]) -> None:
        """Queue a record for every subscription whose pattern matches ``topic``."""
        self._check_up()
        if record_size(body, headers) > self.limit:
            raise ValueError(f"record larger than {self.limit} bytes refused")
        for queue in [*self._fanout, *self._groups.values()]:
            if queue.match(topic):
                queue.put((topic, body, headers))

    def subscribe(self, name: str, match: Callable[[str], bool], group: str | None) -> _Queue:
        """A queue of its own for a fan-out subscriber; the group's shared one for a member."""
        self._check_up()
        if group is None:
            queue = _Queue(match)
            self._fanout.append(queue)
        else:
            queue = self._groups.setdefault((name, group), _Queue(match))
        queue.members += 1
        return queue

    def unsubscribe(self, queue: _Queue) -> None:
        """A member leaves; a queue left without members is dropped with what waits in it."""
        queue.members -= 1
        if queue.members == 0:
            self._fanout = [q for q in self._fanout if q is not queue]
            self._groups = {k: q for k, q in self._groups.items() if q is not queue}
        queue.wake()

    def watch(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(up)`` when the broker goes down or comes back (a driver's callbacks)."""
        self._watchers.append(callback)

    def unwatch(self, callback: Callable[[bool], None]) -> None:
        self._watchers = [c for c in self._watchers if c != callback]

    def kill(self) -> None:
        """Crash: every queue and every record in it is lost, and every client learns it."""
        self.up = False
        for queue in [*self._fanout, *self._groups.values()]:
            queue.lost = True
            queue.wake()
        self._fanout, self._groups = [], {}
        for callback in list(self._watchers):
            callback(False)

    def start(self) -> None:
        """Come back, empty; the clients learn it."""
        self.up = True
        for callback in list(self._watchers):
            callback(True)


# -- errors: one base for the backend, each class also under the core's category ------------------


class TinyError(TransportError):
    """The tiny broker, or the connection to it, failed."""


class TinyConnectError(TinyError, ConnectError):
    """The broker could not be reached at connect."""


class TinyUnavailableError(TinyError, BrokerUnavailableError):
    """The broker is down: the message was not sent (publishing again once it is back is safe)."""


class TinyMessageTooLargeError(TinyError, MessageTooLargeError):
    """The message is larger than the broker takes; nothing was sent."""


# -- the transport ---------------------------------------------------------------------------------


def _delivery(record: Record) -> Delivery:
    """A delivery for a record. Bytes that are no readable AMB message still make one (with
    ``error`` set), which the bus sends to the dead letters. At most once, so the base class's
    ``ack`` and ``nack`` (which do nothing) are right: the broker forgot the record already."""
    topic, body, headers = record
    message, error = decode_delivery(body, headers, topic)
    return Delivery(message, error=error)


class _TinySubscription(Subscription):
    def __init__(self, transport: TinyTransport, queue: _Queue, pattern: str) -> None:
        self._transport = transport
        self._queue = queue
        self._pattern = pattern
        self._closed = False

    def _is_closed(self) -> bool:
        return self._closed

    def ready(self) -> Delivery | None:
        """A record already queued, handed out without a coroutine (the bus asks here first)."""
        queue = self._queue
        if self._closed or queue.lost or not queue.records:
            return None
        return _delivery(queue.records.popleft())

    async def __anext__(self) -> Delivery:
        try:
            record = await self._queue.take(self._is_closed)
        except ConnectionError as exc:
            # A TransportError from here makes the bus close this subscription and open it again
            # through subscribe(), with backoff, until the broker is back.
            raise TinyError(f"subscription to {self._pattern!r} lost: {exc}") from None
        if record is None:
            raise StopAsyncIteration
        return _delivery(record)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._transport._subscriptions.discard(self)
        self._transport.broker.unsubscribe(self._queue)


class TinyTransport(Transport):
    """AMB over a :class:`TinyBroker`.

    :param broker: the broker (default: the process-wide one named ``""``).
    """

    scheme = "tiny"
    event_loops = frozenset({"asyncio", "trio"})  # written with anyio alone, so both
    capabilities = Capabilities(consumer_groups=True, ordered=True, max_message_size=1024 * 1024)

    def __init__(self, broker: TinyBroker | None = None, *, name: str = "") -> None:
        self.broker = broker if broker is not None else TinyBroker.named(name)
        self.name = name
        # The limit is the broker's: an instance declares its own (amb backends reads the class's).
        self.capabilities = attrs.evolve(self.capabilities, max_message_size=self.broker.limit)
        self._connected = False
        self._subscriptions: set[_TinySubscription] = set()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> TinyTransport:
        """``tiny://NAME``, the process-wide broker called NAME (``tiny://``: the unnamed one).

        ``MessageBus.from_url`` calls this through the registry with the options it does not
        take itself.

        The base class's ``from_url`` would call ``cls(url, **options)``; this constructor takes a
        broker, so the URL is read here. Options go through the core's parser with an empty
        declaration: any option at all is an :class:`~amb_core.errors.UnknownOptionError`.

        :raises UnknownOptionError: naming any option this transport does not know.
        """
        parse_options("tiny", (), url, options)
        return cls(name=url.partition("://")[2].strip("/"))

    @property
    def description(self) -> str:
        return f"TinyTransport tiny://{self.name}"

    def _on_broker(self, up: bool) -> None:
        self._set_state(ConnectionState.CONNECTED if up else ConnectionState.RECONNECTING)

    async def connect(self) -> None:
        if not self.broker.up:
            raise TinyConnectError(f"cannot reach {self.description}: the broker is down")
        self.broker.watch(self._on_broker)  # the bus itself marks CONNECTED once this returns
        self._connected = True

    async def aclose(self) -> None:
        if not self._connected:
            return
        self._connected = False
        self.broker.unwatch(self._on_broker)
        for subscription in list(self._subscriptions):
            await subscription.aclose()

    def _check(self) -> None:
        if not self._connected:
            raise NotConnectedError(f"{self.description} is not connected")

    async def publish(self, message: Message) -> None:
        self._check()
        body, headers = encode(message)
        size = record_size(body, headers)
        if size > self.broker.limit:  # refused before sending, with the true limit
            raise TinyMessageTooLargeError(size, self.broker.limit, message.topic)
        try:
            self.broker.send(message.topic, body, headers)
        except ConnectionError:
            raise TinyUnavailableError(
                f"{self.description} is down: message {message.id} was not sent"
            ) from None

    async def subscribe(self, spec: SubscriptionSpec) -> Subscription:
        self._check()
        if spec.start == "earliest":
            raise UnsupportedError(f"{self.description} keeps nothing to replay")
        try:
            queue = self.broker.subscribe(spec.pattern, matcher(spec.pattern), spec.group)
        except ConnectionError:
            raise TinyError(
                f"cannot subscribe to {spec.pattern!r}: {self.description} is down"
            ) from None
        subscription = _TinySubscription(self, queue, spec.pattern)
        self._subscriptions.add(subscription)
        return subscription
