"""MessageBus: the one object applications use.

It owns a transport and one task group (structured concurrency: every subscriber runs inside it, so
closing the bus ends them all), and adds on top of any transport what brokers lack: the topic grammar,
request/reply, retries and dead letters, routing, expiry.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar, overload

import anyio
import anyio.abc

from .cancellation import Cancellations
from .deadletter import DeadLetter, DeadLetterHandler, DeadLetters, RetryPolicy
from .deadlines import bounded_timeout
from .errors import (
    NotConnectedError,
    ReplyError,
    RequestTimeoutError,
    UnsupportedError,
    UnsupportedEventLoopError,
)
from .gather import Gather
from .inbox import H_ERROR, H_ERROR_REASON, Inbox, raise_for_error_reply
from .message import EMPTY_HEADERS, JSONValue, Message, build_message, new_id, new_message
from .middleware import (
    Call,
    Middleware,
    Receiving,
    Send,
    overrides,
    wrap_call,
    wrap_request,
    wrap_send,
)
from .plugins import registries
from .stream_responder import DEFAULT_WINDOW
from .streaming import ReplyStream
from .subscriber import Handler, Subscriber
from .topics import KNOWN_TOPICS, validate_pattern, validate_topic
from .transport import ConnectionState, Subscription, SubscriptionSpec, Transport
from .typed import PLAIN_TYPES, codec_for, plain

__all__ = ["MessageBus"]

log = logging.getLogger("amb.bus")
H = TypeVar("H", bound=Handler)


def _current_loop() -> str:
    """The running event loop's library. anyio no longer needs sniffio, but trio does, so a
    process without sniffio is running asyncio."""
    try:
        import sniffio
    except ImportError:
        return "asyncio"
    try:
        name: str = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return "asyncio"
    return name


def _sends_now(cls: type[Transport]) -> bool:
    """True when ``cls`` has a ``publish_now`` of its own, defined with its ``publish``: a subclass
    that overrides only ``publish`` (to check or change each message) must not be bypassed by the
    ``publish_now`` it inherits."""
    owner = {
        name: next(c for c in cls.__mro__ if name in vars(c)) for name in ("publish", "publish_now")
    }
    return owner["publish_now"] is not Transport and owner["publish_now"] is owner["publish"]


class MessageBus:
    """Publish, subscribe, request and reply over one transport.

    :param transport: the broker connection (default: a private in-memory transport).
    :param retry: the default retry policy of subscriptions.
    :param name: this agent's name, sent as ``sender`` on what it publishes.
    :param dead_letter_handlers: overrides the handlers registered through the hook.
    :param drain_timeout: seconds ``aclose()`` lets handlers in flight finish.
    :param concurrency: default handlers in flight per subscription.
    :param middleware: publish/receive middleware, the first outermost; it runs inside the layers
        plugins register through the ``amb_register_middleware`` hook (see
        :mod:`amb_core.middleware`).
    :param plugin_middleware: False leaves the plugins' layers out (tracing off for this bus
        without uninstalling anything).
    """

    def __init__(
        self,
        transport: Transport | None = None,
        *,
        retry: RetryPolicy | None = None,
        name: str | None = None,
        dead_letter_handlers: Sequence[DeadLetterHandler] | None = None,
        drain_timeout: float = 10.0,
        concurrency: int = 1,
        middleware: Sequence[Middleware] | None = None,
        plugin_middleware: bool = True,
    ) -> None:
        if transport is None:
            from .memory import MemoryTransport

            transport = MemoryTransport()
        self.transport = transport
        self.retry = retry or RetryPolicy()
        self.name = name
        self.id = os.urandom(6).hex()
        self.drain_timeout = drain_timeout
        self.concurrency = concurrency
        self._dlq_handlers = dead_letter_handlers
        self._middleware_given = None if middleware is None else list(middleware)
        self._plugin_middleware = plugin_middleware
        self.middleware: list[Middleware] = self._middleware_given or []
        self._retry_layers: list[Middleware] = []
        self._dead_letter_layers: list[Middleware] = []
        self._request_layers: list[Middleware] = []
        self._send: Send = transport.publish
        self._send_now: Callable[[Message], bool] | None = None  # see Transport.publish_now
        self._state: Literal["new", "connected", "closed"] = "new"
        self._tg: anyio.abc.TaskGroup | None = None
        self._subscribers: list[Subscriber] = []
        self._starting: list[Subscriber] = []
        self._inbox: Inbox | None = None
        self._cancelling: Cancellations | None = None
        self._replied: set[str] = set()  # ids of requests being handled that reply() answered
        self._dead_letters_lost = 0  # dead letters not stored on an at-most-once transport

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MessageBus:
        """A bus over the transport registered for the URL's scheme.

        ``options`` go to the transport, except the bus's own keyword arguments.

        :raises UnknownSchemeError: naming the distribution to install.
        :raises ConfigurationError: when the URL has no scheme.
        """
        from .urls import scheme_of

        bus_keys = {
            "retry",
            "name",
            "dead_letter_handlers",
            "drain_timeout",
            "concurrency",
            "middleware",
            "plugin_middleware",
        }
        bus_options = {k: options.pop(k) for k in list(options) if k in bus_keys}
        scheme = scheme_of(url)
        if not scheme:
            from .errors import ConfigurationError
            from .urls import redact_url

            raise ConfigurationError(
                f"URL {redact_url(url)!r} has no scheme: write it as SCHEME://HOST:PORT, e.g. "
                f"redis://{redact_url(url) or 'localhost:6379'} ("
                + ", ".join(f"{s}://" for s in sorted(registries().transports.entries))
                + " installed)"
            )
        transport = registries().transports.get(scheme).create(url, **options)
        return cls(transport, **bus_options)

    def __repr__(self) -> str:
        return f"<MessageBus {self.id} {self._state} over {self.transport!r}>"

    # -- lifecycle ------------------------------------------------------------------------------

    async def connect(self) -> MessageBus:
        """Connect the transport and start the subscriptions made before.

        The bus's task group opens here and closes in :meth:`aclose`, so call both from the same
        task and at the same cancel-scope level (a ``fail_after`` around ``aclose`` alone is not
        allowed by anyio; put it around both), or use ``async with bus``.

        :raises UnsupportedEventLoopError: when the transport cannot run on this event loop.
        :raises ConnectError: when the broker cannot be reached.
        """
        if self._state == "connected":
            return self
        loop = _current_loop()
        if loop not in self.transport.event_loops:
            raise UnsupportedEventLoopError(
                f"{type(self.transport).__name__} runs on {', '.join(sorted(self.transport.event_loops))},"
                f" not {loop}"
            )
        layers = list(registries().middleware.layers) if self._plugin_middleware else []
        layers += self._middleware_given or []
        self.middleware = [layer.for_bus(self) for layer in layers]
        self._retry_layers = [m for m in self.middleware if overrides(m, "on_retry")]
        self._dead_letter_layers = [m for m in self.middleware if overrides(m, "on_dead_letter")]
        self._request_layers = [m for m in self.middleware if overrides(m, "on_request")]
        self._send = wrap_send(self.middleware, self.transport.publish)
        self._send_now = (
            self.transport.publish_now
            if self._send == self.transport.publish and _sends_now(type(self.transport))
            else None
        )
        await self.transport.connect()
        if self.transport.state in (ConnectionState.IDLE, ConnectionState.CLOSED):
            self.transport._set_state(ConnectionState.CONNECTED)  # one that does not report it
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._state = "connected"
        for subscriber in self._subscribers:  # those made before connect
            tg.start_soon(subscriber.run)
        return self

    async def aclose(self) -> None:
        """Stop the subscriptions (draining handlers in flight), then close the transport.

        Idempotent.
        """
        if self._state != "connected":
            self._state = "closed"
            return
        if self._inbox is not None:
            with anyio.move_on_after(1.0):  # bounded: closing must not wait on a dead broker
                await self._inbox.cancel_all()
        self._state = "closed"
        if self._inbox is not None:
            self._inbox.close()
        try:
            async with anyio.create_task_group() as stopping:
                for subscriber in self._subscribers:
                    stopping.start_soon(subscriber.stop, self.drain_timeout)
        finally:
            try:
                with anyio.CancelScope(shield=True):
                    try:
                        await self.transport.aclose()
                    finally:
                        self.transport._set_state(ConnectionState.CLOSED)
            finally:
                tg, self._tg = self._tg, None
                if tg is not None:
                    tg.cancel_scope.cancel()
                    await tg.__aexit__(None, None, None)

    close = aclose

    @property
    def state(self) -> ConnectionState:
        """The transport's connection state (``IDLE``, ``CONNECTED``, ``RECONNECTING``, ``CLOSED``):
        what a readiness probe reports. See :class:`~amb_core.transport.ConnectionState`."""
        return self.transport.state

    async def __aenter__(self) -> MessageBus:
        return await self.connect()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _require_connected(self) -> None:
        if self._state != "connected":
            raise NotConnectedError(f"the bus is {self._state}; use 'async with bus' or connect()")

    # -- publish --------------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: JSONValue = None,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        ttl: float | None = None,
        priority: int = 0,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        sender: str | None = None,
    ) -> Message:
        """Publish ``payload`` (a JSON value or bytes) to ``topic``; return the message sent.

        Subscriptions made on this bus before the call are established before it is sent.

        :raises InvalidTopicError: for a pattern or a malformed topic.
        :raises ConfigurationError: for a payload the wire format cannot carry.
        :raises PublishError: when the broker does not take it.
        :raises NotConnectedError: outside ``connect()``/``aclose()``.
        """
        if self._starting or self._state != "connected":
            await self._ready_to_publish()
        try:  # validate_topic's own first test, without the call: the hot path
            known = topic in KNOWN_TOPICS
        except TypeError:  # unhashable: no topic at all, as validate_topic says
            known = False
        if not known:
            validate_topic(topic)
        message = new_message(
            topic,
            payload if type(payload) in PLAIN_TYPES else plain(payload),
            headers or EMPTY_HEADERS,
            correlation_id,
            reply_to,
            sender or self.name,
            ttl,
            priority,
            key,
        )
        send_now = self._send_now
        if send_now is None or not send_now(message):
            await self._send(message)
        return message

    async def publish_many(
        self,
        topic: str,
        payloads: Iterable[JSONValue],
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        ttl: float | None = None,
        priority: int = 0,
        sender: str | None = None,
    ) -> list[Message]:
        """Publish several payloads to one topic as one batch; return the messages sent, in order.

        Transports that batch natively (Kafka: produce all, then await every delivery report;
        NATS JetStream: acknowledgements awaited together; SQS: SNS batches of 10) send the batch
        in far fewer round trips than one ``publish`` per payload. Every message is a message of
        its own (own id, own delivery), with the given metadata in common; messages with one
        ``key`` keep their order on ordered transports. Publish middleware sees each message, and
        the batch is handed to the transport once every message has passed it.

        Not atomic: when it raises, messages before the failing one may have been sent.

        :raises InvalidTopicError: for a pattern or a malformed topic (nothing is sent).
        :raises ConfigurationError: for a payload the wire format cannot carry.
        :raises PublishError: when the broker does not take one of them.
        :raises NotConnectedError: outside ``connect()``/``aclose()``.
        """
        if self._starting or self._state != "connected":
            await self._ready_to_publish()
        validate_topic(topic)
        common = headers or EMPTY_HEADERS
        sender = sender or self.name
        now = time.time()
        messages = [
            build_message(
                topic,
                p if type(p) in PLAIN_TYPES else plain(p),
                common,
                new_id(),
                None,
                None,
                now,
                sender,
                ttl,
                1,
                priority,
                key,
            )
            for p in payloads
        ]
        if not messages:
            return messages
        if self._send == self.transport.publish:  # no publish middleware
            await self.transport.publish_many(messages)
            return messages
        batch: list[Message] = []

        async def collect(message: Message) -> None:
            batch.append(message)

        send = wrap_send(self.middleware, collect)
        for message in messages:
            await send(message)
        if batch:
            await self.transport.publish_many(batch)
        return messages

    async def _publish_message(self, message: Message, *, one_off: bool = False) -> None:
        """Publish a message built elsewhere (a reply, a forward, a replay); ``one_off`` topics
        (reply inboxes) are checked without being remembered."""
        self._require_connected()
        validate_topic(message.topic, remember=not one_off)
        await self._send(message)

    async def _ready_to_publish(self) -> None:
        """The slow path of every publish: refuse outside ``connect()``/``aclose()``, and first
        establish the subscriptions made before (the hot path only tests for either)."""
        self._require_connected()
        if self._starting:
            await self._settle()

    async def _settle(self) -> None:
        starting, self._starting = self._starting, []
        for subscriber in starting:
            try:
                await subscriber.wait_ready()
            except Exception as exc:  # reported by the subscriber itself and by awaiting it
                log.debug("subscription %r did not start: %r", subscriber.pattern, exc)

    # -- subscribe ------------------------------------------------------------------------------

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: None = None,
        *,
        group: str | None = ...,
        concurrency: int | None = ...,
        retry: RetryPolicy | None = ...,
        start: Literal["new", "earliest"] = ...,
        ack_wait: float = ...,
        prefetch: int = ...,
    ) -> Callable[[H], H]: ...

    @overload
    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        group: str | None = ...,
        concurrency: int | None = ...,
        retry: RetryPolicy | None = ...,
        start: Literal["new", "earliest"] = ...,
        ack_wait: float = ...,
        prefetch: int = ...,
        internal: bool = ...,
    ) -> Subscriber: ...

    def subscribe(
        self,
        pattern: str,
        handler: Handler | None = None,
        *,
        group: str | None = None,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        start: Literal["new", "earliest"] = "new",
        ack_wait: float = 30.0,
        prefetch: int = 100,
        internal: bool = False,
    ) -> Subscriber | Callable[[H], H]:
        """Call ``handler`` for every message matching ``pattern``.

        With a handler, returns a :class:`Subscriber`: ``await`` it to wait until the broker has
        the subscription (``await bus.subscribe(p, h)``). Without one, it is a decorator. Without a
        ``group`` every subscriber gets every message; within a group each message goes to one
        member. The handler's non-None return value answers requests.

        :raises InvalidTopicError: for a malformed pattern.
        :raises UnsupportedError: for ``start="earliest"`` on a transport without replay.
        """
        if handler is None:

            def decorator(function: H) -> H:
                self.subscribe(
                    pattern,
                    function,
                    group=group,
                    concurrency=concurrency,
                    retry=retry,
                    start=start,
                    ack_wait=ack_wait,
                    prefetch=prefetch,
                )
                return function

            return decorator
        validate_pattern(pattern)
        if start == "earliest" and not self.transport.capabilities.replay:
            raise UnsupportedError(
                f"{type(self.transport).__name__} cannot replay (start='earliest')"
            )
        if self._state == "closed":
            self._require_connected()
        retry = retry or self.retry
        spec = SubscriptionSpec(pattern, group, start, retry.max_attempts, prefetch, ack_wait)
        subscriber = Subscriber(
            self,
            spec,
            handler,
            retry=retry,
            concurrency=self.concurrency if concurrency is None else concurrency,
            internal=internal,
        )
        if not internal:
            self._subscribers.append(subscriber)
        else:
            self._subscribers.insert(0, subscriber)
        self._starting.append(subscriber)
        if self._tg is not None:
            self._tg.start_soon(subscriber.run)
        return subscriber

    async def unsubscribe(self, subscriber: Subscriber | Handler) -> None:
        """Stop a subscription (or every subscription of a handler), draining its handlers."""
        targets = [s for s in self._subscribers if s is subscriber or s.handler is subscriber]
        for target in targets:
            self._subscribers.remove(target)
            if target in self._starting:
                self._starting.remove(target)
            await target.stop(self.drain_timeout)

    @property
    def subscribers(self) -> list[Subscriber]:
        """The live subscriptions of this bus."""
        return list(self._subscribers)

    @asynccontextmanager
    async def _raw_subscription(self, spec: SubscriptionSpec) -> Any:
        self._require_connected()
        caps = self.transport.capabilities
        if spec.start == "earliest" and not (caps.replay or caps.dead_letter_replay):
            raise UnsupportedError(f"{type(self.transport).__name__} cannot replay dead letters")
        source: Subscription = await self.transport.subscribe(spec)
        try:
            yield source
        finally:
            with anyio.CancelScope(shield=True):
                await source.aclose()

    # -- request / reply ------------------------------------------------------------------------

    async def request(
        self,
        topic: str,
        payload: JSONValue = None,
        *,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        response_type: Any = None,
    ) -> Message:
        """Publish a request and return the reply message.

        With ``response_type`` (a pydantic model, dataclass, attrs class, ...; see
        :mod:`.typed`), the reply's payload is validated as that type and returned as an instance.

        :raises RequestTimeoutError: (a ``TimeoutError``) naming the topic, after ``timeout`` s.
        :raises NoRespondersError: when the broker knows nobody listens (NATS).
        :raises RemoteHandlerError: when the responder's handler failed for good.
        :raises NotConnectedError: when the bus closes while the request waits.
        :raises PayloadValidationError: when the reply is not a valid ``response_type``.
        """
        if response_type is not None:
            reply = await self.request(topic, payload, timeout=timeout, headers=headers, key=key)
            value = codec_for(response_type).validate(reply.payload, reply.topic)
            return reply.evolve(payload=value)
        if not self._request_layers:
            return await self._request(topic, payload, timeout, headers, key)

        async def request() -> Message:
            return await self._request(topic, payload, timeout, headers, key)

        return await wrap_request(self._request_layers, topic, request)()

    async def _request(
        self,
        topic: str,
        payload: JSONValue,
        timeout: float,
        headers: Mapping[str, str] | None,
        key: str | None,
    ) -> Message:
        self._require_connected()
        validate_topic(topic)
        asked = timeout
        timeout = bounded_timeout(timeout)  # inside a handler: no later than its deadline
        if timeout <= 0:
            raise RequestTimeoutError(topic, asked)
        if self.transport.capabilities.native_request_reply:
            if self._starting:
                await self._settle()
            message = build_message(
                topic,
                payload if type(payload) in PLAIN_TYPES else plain(payload),
                headers or EMPTY_HEADERS,
                new_id(),
                None,
                None,
                time.time(),
                self.name,
                timeout,  # the request's deadline travels as its ttl
                1,
                0,
                key,
            )
            return raise_for_error_reply(topic, await self._native_request(message, timeout))
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = Inbox(self)
        fields: dict[str, object] = {
            "payload": payload,
            "headers": headers,
            "key": key,
            "ttl": timeout,  # the request's deadline travels as its ttl
        }
        return await inbox.request(fields, topic, timeout)

    def stream(
        self,
        topic: str,
        payload: JSONValue = None,
        *,
        timeout: float = 30.0,
        idle_timeout: float | None = None,
        gap_timeout: float = 5.0,
        window: int = DEFAULT_WINDOW,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
    ) -> ReplyStream:
        """Ask for a streamed reply: ``async for chunk in bus.stream(...)``, or ``async with``.

        Chunks are :class:`Message` objects, in order, each once. ``timeout`` bounds the whole
        stream (and travels as its deadline), ``idle_timeout`` each wait for a chunk,
        ``gap_timeout`` the wait for a chunk the broker lost while later ones arrived; the
        responder runs at most ``window`` chunks ahead of the reader. See :mod:`.streaming`.

        :raises RequestTimeoutError: after ``timeout`` (:class:`StreamIdleError` after
            ``idle_timeout``).
        :raises StreamGapError: when a chunk is lost.
        :raises RemoteHandlerError: when the responder's handler failed, after the chunks it sent.
        """
        self._require_connected()
        return ReplyStream(
            self,
            topic,
            payload,
            timeout=timeout,
            idle_timeout=idle_timeout,
            gap_timeout=gap_timeout,
            window=window,
            headers=headers,
            key=key,
        )

    def gather(
        self,
        topic: str,
        payload: JSONValue = None,
        *,
        timeout: float = 5.0,
        max_replies: int | None = None,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
    ) -> Gather:
        """Scatter-gather: ``async for reply in bus.gather(...)``, or ``await`` it for a list.

        One request to every subscriber of ``topic`` (one member per group); the replies as they
        arrive, until ``timeout`` or ``max_replies``. No responder gives an empty result. See
        :mod:`.gather`.
        """
        self._require_connected()
        return Gather(
            self,
            topic,
            payload,
            timeout=timeout,
            max_replies=max_replies,
            headers=headers,
            key=key,
        )

    async def listen_for_cancellations(self) -> None:
        """Listen for requesters' cancels now, and wait until the broker has the subscription.

        A bus starts listening by itself when it serves its first request, in the background; a
        service that must honour the cancel of its very first requests (on Kafka or SQS, where
        subscribing takes seconds) calls this once after connecting. See :mod:`.cancellation`.
        """
        self._require_connected()
        await self._cancellations().listening()

    async def _inbox_ready(self) -> Inbox:
        """The bus's reply inbox, subscribed."""
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = Inbox(self)
        return await inbox.ready()

    def _cancellations(self) -> Cancellations:
        """The requests this bus serves and the way to cancel them (made at first use)."""
        cancellations = self._cancelling
        if cancellations is None:
            cancellations = self._cancelling = Cancellations(self)
        return cancellations

    async def _native_request(self, message: Message, timeout: float) -> Message:
        """The transport's own request/reply, with the request passing the publish middleware.

        A request given up (cancelled, or timed out) tells its responder (see
        :mod:`.cancellation`)."""
        try:
            return await self._native_request_once(message, timeout)
        except RequestTimeoutError:
            self._cancellations().cancel_later(message.id)
            raise
        except Exception:  # the request failed (no responder, a broker error): nobody to tell
            raise
        except BaseException:  # cancelled
            self._cancellations().cancel_later(message.id)
            raise

    async def _native_request_once(self, message: Message, timeout: float) -> Message:
        if not self.middleware:
            return await self.transport.request(message, timeout)
        replies: list[Message] = []

        async def send(request: Message) -> None:
            replies.append(await self.transport.request(request, timeout))

        await wrap_send(self.middleware, send)(message)
        if not replies:
            raise ReplyError(f"publish middleware did not send the request on {message.topic!r}")
        return replies[-1]

    def _wrap_handler(self, call: Call, receiving: Receiving | None = None) -> Call:
        """A handler call wrapped by the receive middleware (resolved at connect)."""
        return wrap_call(self.middleware, call, receiving)

    def _retrying(self, message: Message, error: BaseException, delay: float) -> None:
        """Tell the layers that override ``on_retry``; a layer that raises is logged."""
        for layer in self._retry_layers:
            try:
                layer.on_retry(message, error, delay)
            except Exception as exc:
                log.warning("middleware %r failed in on_retry: %r", layer, exc)

    async def reply(
        self, message: Message, payload: JSONValue, *, headers: Mapping[str, str] | None = None
    ) -> Message:
        """Answer ``message`` explicitly (a handler may also just return the answer).

        :raises ReplyError: when ``message`` carries no ``reply_to``.
        """
        if message.reply_to is None:
            raise ReplyError(f"message {message.id} on {message.topic!r} asked for no reply")
        reply = build_message(
            message.reply_to,
            payload if type(payload) in PLAIN_TYPES else plain(payload),
            headers or EMPTY_HEADERS,
            new_id(),
            message.correlation_id or message.id,
            None,
            time.time(),
            self.name or self.id,  # a gather tells its responders apart by sender
            None,
            1,
            0,
            None,
        )
        await self._publish_message(reply, one_off=True)
        self._replied.add(message.id)
        return reply

    async def _answer(self, message: Message, result: JSONValue) -> None:
        """Send a handler's return value as the reply, unless the handler replied itself."""
        if message.id in self._replied:
            return
        await self.reply(message, result)

    def _forget_reply(self, message: Message) -> None:
        self._replied.discard(message.id)

    # -- dead letters ---------------------------------------------------------------------------

    @property
    def dead_letters(self) -> DeadLetters:
        """List and replay dead letters (needs ``replay`` or ``dead_letter_replay``)."""
        return DeadLetters(self)

    async def _dead_letter(self, dead: DeadLetter) -> bool:
        """Hand ``dead`` to every dead-letter handler and tell a waiting requester; True when
        every handler stored it (one that raises is logged and makes it False)."""
        for layer in self._dead_letter_layers:
            try:
                layer.on_dead_letter(dead)
            except Exception as exc:
                log.warning("middleware %r failed in on_dead_letter: %r", layer, exc)
        handlers = self._dlq_handlers
        if handlers is None:
            handlers = registries().dead_letters.handlers
        stored = True
        for handler in handlers:
            try:
                await handler(dead, self)
            except Exception as exc:
                stored = False
                log.error(
                    "dead-letter handler %r failed for %s from %r: %r",
                    handler,
                    dead.message.id,
                    dead.message.topic,
                    exc,
                )
        message = dead.message
        if message.reply_to is not None and dead.reason != "expired":
            # An expired request gets no answer: its requester's own timer has run out already.
            error_headers = {H_ERROR: dead.error[:2000], H_ERROR_REASON: dead.reason}
            try:
                await self.reply(message, None, headers=error_headers)
            except Exception as exc:
                log.warning(
                    "could not tell the requester of %s about its failure: %r", message.id, exc
                )
        return stored

    # -- routing --------------------------------------------------------------------------------

    def route(self, source: str, rules: Any, **options: Any) -> Subscriber:
        """Forward messages from ``source`` by content; see :class:`amb_core.routing.Router`."""
        from .routing import Router

        return Router(self, source, rules, **options).start()
