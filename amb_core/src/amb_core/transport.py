"""The Transport contract: the one thing a backend implements.

Five brokers differ in kind (push or pull, fan-out or work queue, durable or not, native wildcards or
not). A transport only moves messages and says, through :class:`Capabilities`, what it guarantees;
the bus adds everything else once, in the core: retries with backoff, dead letters, request/reply over
an inbox, routing, the wildcard re-check, expiry. The conformance suite in
:mod:`amb_core.testing.conformance` proves every capability a transport declares.

Abstract: :meth:`Transport.connect`, :meth:`Transport.aclose`, :meth:`Transport.publish`,
:meth:`Transport.subscribe`, and on the returned :class:`Subscription`, ``__anext__`` and ``aclose``.
Everything else is concrete with a working default.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, ClassVar, Literal, TypeVar

import attrs

from .errors import DecodeError, UnsupportedError
from .message import Message
from .wire import decode

__all__ = [
    "Capabilities",
    "ConnectionState",
    "Delivery",
    "Subscription",
    "SubscriptionSpec",
    "Transport",
    "decode_delivery",
    "undecodable",
]

_T = TypeVar("_T", bound="Transport")


@attrs.frozen(slots=True)
class Capabilities:
    """What a transport guarantees; each ``True`` is proven by the conformance suite.

    :param persistent: messages published while a consumer group has no live member wait for it.
    :param consumer_groups: with a ``group``, each message goes to exactly one member.
    :param at_least_once: an unacknowledged or nacked delivery is delivered again.
    :param ordered: one publisher's messages with one key reach a subscriber in order.
    :param native_wildcards: the broker matches ``*``/``>`` itself (the core re-checks anyway).
    :param native_request_reply: :meth:`Transport.request` is implemented natively.
    :param native_dead_letter: the broker moves exhausted messages aside by itself.
    :param native_delay: ``nack(delay=...)`` is scheduled by the broker, not by a local timer.
    :param replay: a subscription with ``start="earliest"`` reads messages published before it.
    :param dead_letter_replay: ``start="earliest"`` works on ``dlq.*`` patterns, so dead letters can
        be listed and replayed (``bus.dead_letters``, ``amb dlq``), on a broker that cannot replay
        ordinary topics (SQS keeps an archive queue of dead letters). ``replay`` implies it.
    :param headers: metadata rides in broker-native headers rather than inside the body.
    :param delivery_count: the broker counts deliveries, so a message handed to another consumer
        after its first one died arrives with ``attempt >= 2`` (Redis Streams, JetStream, SQS).
        Without it, attempts are counted by the consumer and start again at 1 after a takeover.
    :param max_message_size: the largest encoded message the broker takes, when it has a limit:
        a publish past it raises :class:`~amb_core.errors.MessageTooLargeError` before anything is
        sent.
    :param failover_loss: a *limit*, not a guarantee: publishes that returned may be lost when
        the broker fails over to a replica, because it replicates asynchronously (a Redis Cluster
        without ``wait_replicas``). Declared so that an application can tell; see
        docs/scaling.md for what was measured.

    ``native_wildcards``, ``native_request_reply`` and ``native_dead_letter`` are informational:
    they say how the transport does something every transport must do (the core re-checks
    wildcards, runs request/reply over an inbox and dead-letters by itself), so the suite proves the
    behaviour on every transport, not the flag. ``failover_loss`` is informational too: it declares
    a loss the suite cannot provoke (a backend's own failover tests measure it).
    """

    persistent: bool = False
    consumer_groups: bool = False
    at_least_once: bool = False
    ordered: bool = False
    native_wildcards: bool = False
    native_request_reply: bool = False
    native_dead_letter: bool = False
    native_delay: bool = False
    replay: bool = False
    dead_letter_replay: bool = False
    headers: bool = False
    delivery_count: bool = False
    max_message_size: int | None = None
    failover_loss: bool = False

    def names(self) -> list[str]:
        """The names of the boolean capabilities that are ``True``."""
        return [f.name for f in attrs.fields(Capabilities) if getattr(self, f.name) is True]


class ConnectionState(str, Enum):
    """Where a transport's connection to its broker stands (:attr:`Transport.state`).

    ``IDLE`` before :meth:`Transport.connect`; ``CONNECTED`` while the broker is reachable;
    ``RECONNECTING`` while the connection is lost and the driver tries again (publishes may raise
    :class:`~amb_core.errors.BrokerUnavailableError` or wait, as the transport documents);
    ``CLOSED`` after :meth:`Transport.aclose`. A readiness probe reports ready on ``CONNECTED``.
    """

    IDLE = "idle"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value


@attrs.frozen(slots=True)
class SubscriptionSpec:
    """What the bus asks a transport to subscribe to.

    :param pattern: a valid pattern (already checked by the bus).
    :param group: consumer group; ``None`` means a fan-out subscriber that sees every message.
    :param start: ``"new"`` reads from now on; ``"earliest"`` also reads what the broker retains
        (only with the ``replay`` capability; a durable group that exists keeps its position).
    :param max_attempts: the bus's retry limit, for brokers that count deliveries natively.
    :param prefetch: how many deliveries the transport may hold ahead of the handler.
    :param ack_wait: seconds after which a delivery that was never acknowledged (its consumer died)
        is handed to another consumer, where the broker supports it.
    """

    pattern: str
    group: str | None = None
    start: Literal["new", "earliest"] = "new"
    max_attempts: int | None = None
    prefetch: int = 100
    ack_wait: float = 30.0


class Delivery:
    """One message as delivered, with the means to settle it.

    Transports subclass it and override :meth:`ack` and :meth:`nack`. ``error`` is set when the
    bytes could not be decoded; ``message.payload`` then holds the raw bytes, and the bus sends it
    to the dead letters.
    """

    __slots__ = ("attempt", "error", "message")

    def __init__(
        self, message: Message, attempt: int = 1, error: DecodeError | None = None
    ) -> None:
        self.message = message
        self.attempt = attempt
        self.error = error

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "ack" in cls.__dict__ and "ack_now" not in cls.__dict__:
            cls.ack_now = Delivery._ack_later  # type: ignore[method-assign]

    async def ack(self) -> None:
        """Settle the delivery: the broker may forget it. Idempotent."""

    def ack_now(self) -> bool:
        """Settle without waiting, where settling needs no I/O (an in-process commit position);
        True when done, False when :meth:`ack` must be awaited. Idempotent.

        The bus calls it first after each handled message: a plain call costs less than the
        coroutine of :meth:`ack`. A subclass that overrides :meth:`ack` and not this method gets
        False here, so its :meth:`ack` is always awaited.
        """
        return True  # the base ack does nothing

    def _ack_later(self) -> bool:
        return False

    async def nack(self, delay: float | None = None) -> None:
        """Give it back for redelivery, after ``delay`` seconds when given. Idempotent.

        At-most-once transports drop it.
        """


def decode_delivery(
    body: bytes, headers: Mapping[str, str] | None, topic: str, attempt: int = 1
) -> tuple[Message, DecodeError | None]:
    """Decode a broker record, or wrap undecodable bytes so that they can be dead-lettered."""
    try:
        return decode(body, headers, topic, attempt=attempt), None
    except DecodeError as exc:
        return undecodable(body, topic, attempt), exc


def undecodable(body: bytes, topic: str, attempt: int = 1) -> Message:
    """The message that carries undecodable bytes to the dead letters: the raw bytes as payload."""
    return Message(topic=topic, payload=bytes(body), attempt=attempt)


class Subscription(ABC):
    """An open subscription: an async iterator of :class:`Delivery` that can be closed."""

    exact: ClassVar[bool] = False
    """True when every delivery's topic matches the subscription's pattern by AMB's rules (the
    transport routes by them itself, as the in-memory one does). Otherwise the bus checks each
    topic and acknowledges, unhandled, what a broker's broader native match let through."""

    def __aiter__(self) -> Subscription:
        return self

    def ready(self) -> Delivery | None:
        """A delivery already at hand, or None; never waits.

        The bus takes deliveries here first and awaits :meth:`__anext__` only when there is none,
        so a transport that holds a fetched batch hands it out without a coroutine per message
        (one coroutine costs about as much as decoding a small message). It must not skip what
        :meth:`__anext__` would return first. By default nothing is at hand.
        """
        return None

    def take(self) -> Message | None:
        """The next message alone, when receiving it is all its settlement needs; else None.

        For subscriptions whose acknowledgement does nothing (an in-memory fan-out queue; an
        at-most-once broker's): the bus handles the message without a :class:`Delivery` per
        message, and asks :meth:`delivery_of` for one only when the message needs settling after
        all (its handler failed, or it is a request). Return None whenever the next item is
        anything else (undecodable, a redelivery, nothing at hand): the bus then reads it through
        :meth:`ready` and :meth:`__anext__` as usual, so ``take`` must never skip what those
        would return first. Overridden together with :meth:`delivery_of`; the bus uses it only on
        an :attr:`exact` subscription read one handler at a time. By default nothing is taken.
        """
        return None

    def delivery_of(self, message: Message) -> Delivery:
        """The unsettled delivery of a message :meth:`take` returned: nacking it redelivers the
        message (``attempt`` + 1) as a nack of any delivery of this subscription would."""
        raise NotImplementedError(f"{type(self).__name__} takes no messages: see take()")

    @abstractmethod
    async def __anext__(self) -> Delivery:
        """The next delivery; waits for one.

        :raises StopAsyncIteration: once the subscription is closed.
        :raises TransportError: when the broker fails in a way the transport cannot recover from.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Stop receiving. Idempotent. Unsettled deliveries go back to the broker where it can
        redeliver them; resources owned only by this subscription (fan-out groups, queues) are
        removed."""


class Transport(ABC):
    """A broker connection that publishes messages and opens subscriptions.

    Subclasses set ``scheme``, ``event_loops`` and ``capabilities``, and never leak a driver
    exception: they translate them to :mod:`amb_core.errors` categories.
    """

    scheme: ClassVar[str] = ""
    event_loops: ClassVar[frozenset[str]] = frozenset({"asyncio"})
    capabilities: Capabilities = Capabilities()
    replies_overlap: bool = False
    """True when a responder should take its next request while the reply to the last one is
    still being sent: for an at-most-once transport whose every awaited send costs a round trip
    (Redis pub/sub), so that a one-at-a-time responder's replies leave together, as a busy
    publisher's do. Handlers still run one at a time; a reply that fails is logged as before.
    Left False where a send is queued without a wait anyway (memory, NATS core), since a task
    per reply would only cost, and where the ack must follow the reply (at-least-once)."""
    _state: ConnectionState = ConnectionState.IDLE

    @property
    def state(self) -> ConnectionState:
        """The connection's state, as the transport last learnt it; read by applications (a
        readiness probe) and by the conformance suite.

        A transport reports ``RECONNECTING`` with :meth:`_set_state` as soon as its driver knows
        the broker is gone, and ``CONNECTED`` once it is back. The bus sets ``CONNECTED`` after a
        successful :meth:`connect` that left the state ``IDLE`` (or ``CLOSED``), and ``CLOSED`` after
        :meth:`aclose`, so a transport that never reconnects need not touch it.
        """
        return self._state

    def _set_state(self, state: ConnectionState) -> None:
        """Record a change of the connection's state (safe to call from a driver's callback on
        the event loop; from another thread, a plain assignment is atomic too).

        Once ``CLOSED``, ``RECONNECTING`` is ignored (a driver still retrying after
        :meth:`aclose`) and ``CONNECTED`` is taken (the transport connected again), so a transport
        stops its driver's callbacks in :meth:`aclose`.
        """
        if self._state is not ConnectionState.CLOSED or state is ConnectionState.CONNECTED:
            self._state = state

    @classmethod
    def from_url(cls: type[_T], url: str, **options: Any) -> _T:
        """The transport for ``url``, keyword ``options`` winning over the URL's query string.

        ``MessageBus.from_url`` and the plugin registry call this. The default passes both to the
        constructor, ``cls(url, **options)``: a transport whose ``__init__`` takes the URL and its
        options (and parses them with :func:`amb_core.options.parse_options`, so an unknown option
        is a :class:`~amb_core.errors.UnknownOptionError` at once) needs no override. Override it
        only when a URL must choose among several classes or needs work the constructor cannot do.

        :raises ConfigurationError: for a URL or option the transport does not take.
        """
        return cls(url, **options)  # type: ignore[call-arg]  # the documented constructor

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection; fails fast and typed.

        :raises ConnectError: when the broker cannot be reached in a bounded time.
        :raises AuthenticationError: when the broker refuses the credentials.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Close everything this transport opened. Idempotent; never raises for a dead broker."""

    @abstractmethod
    async def publish(self, message: Message) -> None:
        """Send one message; returns once the broker has it (as far as the broker can say).

        :raises PublishError: when the broker did not take it.
        :raises MessageTooLargeError: when it exceeds the broker's size limit.
        :raises NotConnectedError: before connect or after close.
        """

    @abstractmethod
    async def subscribe(self, spec: SubscriptionSpec) -> Subscription:
        """Subscribe; when this returns, messages published afterwards will be delivered.

        :raises TransportError: when the broker refuses.
        :raises UnsupportedError: when the spec needs a capability the transport lacks.
        """

    def publish_now(self, message: Message) -> bool:
        """Send without waiting, where that needs no I/O and no wait (an in-process queue with
        room); True when sent, False when nothing was done and :meth:`publish` must be awaited.

        The bus calls it first on each publish when no publish middleware is installed: a plain
        call costs less than the coroutine of :meth:`publish`. The base sends nothing.
        """
        return False

    async def publish_many(self, messages: Iterable[Message]) -> None:
        """Send several messages; transports that batch natively override this.

        :raises PublishError: as :meth:`publish`.
        """
        for message in messages:
            await self.publish(message)

    async def request(self, message: Message, timeout: float) -> Message:
        """Send a request and await its reply natively (``native_request_reply`` only).

        :raises UnsupportedError: unless overridden.
        :raises RequestTimeoutError: when no reply arrives in time.
        :raises NoRespondersError: when the broker knows nobody listens.
        """
        raise UnsupportedError(f"{type(self).__name__} has no native request/reply")

    @property
    def description(self) -> str:
        """A human description, credentials redacted; used in reprs, logs and errors."""
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<{self.description}>"
