"""A handler subscribed to a pattern: the loop that takes deliveries and settles each one.

One :class:`Subscriber` per ``bus.subscribe`` call. It reads its transport subscription, re-checks the
topic against AMB's grammar, dead-letters what is undecodable or expired, calls the handler, answers
requests with the handler's return value, and on failure nacks with backoff or dead-letters. Nothing
a handler does can end the loop; a broken transport subscription is reopened with backoff.

With ``concurrency=1`` (the default) handlers run inline, one at a time and in delivery order, with no
task per message; with more, each delivery gets a task, bounded by a semaphore.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel

from .backoff import Backoff
from .cancellation import HandlerCancelled
from .deadletter import DeadLetter, DeadLetterReason, RetryPolicy
from .deadlines import _deadline
from .errors import PayloadValidationError, RejectMessage
from .message import Message
from .middleware import Receiving
from .stream_responder import H_STREAM, StreamInterrupted, streaming_call
from .topics import matcher
from .transport import Delivery, Subscription, SubscriptionSpec
from .typed import typed_handler

if TYPE_CHECKING:
    from .bus import MessageBus

__all__ = ["Handler", "Subscriber"]

log = logging.getLogger("amb.subscriber")
FAIR_RUN = 256
"""Deliveries a subscriber handles between two checkpoints: a transport that hands out a fetched
batch without waiting, and handlers that never wait, would otherwise keep every other task of the
loop (timeouts, publishers, other subscribers) waiting until the backlog is gone."""
REPLIES_IN_FLIGHT = 64
"""Replies a subscriber may have unsent while it handles the next requests (on transports that
ask for it, see ``Transport.replies_overlap``); past that, the next reply waits for room."""
Handler = Callable[[Message], Any]
"""An async or plain function taking the :class:`Message`; a non-None return answers a request."""


def _streams(handler: Handler) -> bool:
    """True for a handler that answers in chunks: an async generator function."""
    return inspect.isasyncgenfunction(handler) or inspect.isasyncgenfunction(
        getattr(handler, "__call__", None)  # noqa: B004 - async generator objects' __call__
    )


def _taker(source: Subscription) -> Callable[[], Message | None] | None:
    """``source.take`` where it serves (overridden, on an exact subscription), else None: the
    inline reader then does not call the default's ``return None`` once per message."""
    if source.exact and type(source).take is not Subscription.take:
        return source.take
    return None


def _as_async(handler: Handler) -> Callable[[Message], Awaitable[Any]]:
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
    ):
        return handler

    async def call_sync(message: Message) -> Any:
        return handler(message)

    call_sync.never_waits = True  # type: ignore[attr-defined]  # see _call_cancellable
    call_sync.plain = handler  # type: ignore[attr-defined]  # see _read_inline
    return call_sync


class Subscriber:
    """A live subscription of one handler. ``await`` it to wait until it is established.

    :ivar pattern: the subscribed pattern.
    :ivar group: the consumer group, or ``None`` for fan-out.
    """

    def __init__(
        self,
        bus: MessageBus,
        spec: SubscriptionSpec,
        handler: Handler,
        *,
        concurrency: int,
        retry: RetryPolicy,
        internal: bool = False,
    ) -> None:
        if concurrency < 1:
            from .errors import ConfigurationError

            raise ConfigurationError("concurrency must be at least 1")
        self.pattern = spec.pattern
        self.group = spec.group
        self.handler = handler
        self.concurrency = concurrency
        self.retry = retry
        self._bus = bus
        self._spec = spec
        self._target, self.codec = typed_handler(handler)  # validates a declared payload type
        self._streams = _streams(self._target)
        self._call = self._handler_call()
        self._internal = internal  # the bus's own subscriptions skip the receive middleware
        self._match = matcher(spec.pattern)
        self._ready = anyio.Event()
        self._done = anyio.Event()
        self._error: BaseException | None = None
        self._stopping = False
        self._busy = 0
        self._reader: anyio.CancelScope | None = None
        self._hard: anyio.CancelScope | None = None
        self._source: Subscription | None = None
        self._redelivers = bus.transport.capabilities.at_least_once
        self._replies: anyio.abc.TaskGroup | None = None  # replies sent while reading on
        self._reply_slots = anyio.Semaphore(REPLIES_IN_FLIGHT)

    def _handler_call(self) -> Callable[[Message], Awaitable[Any]]:
        if self._streams:
            return streaming_call(self._bus, self._target)
        return _as_async(self._target)

    def __repr__(self) -> str:
        group = f" group={self.group!r}" if self.group else ""
        return (
            f"<Subscriber {self.pattern!r}{group} handler={getattr(self.handler, '__name__', '?')}>"
        )

    def __await__(self) -> Generator[Any, None, Subscriber]:
        return self.wait_ready().__await__()

    @property
    def active(self) -> bool:
        """True while the subscription is established and not stopping."""
        return self._source is not None and not self._stopping and not self._done.is_set()

    async def wait_ready(self) -> Subscriber:
        """Wait until the broker has the subscription.

        :raises TransportError: when the transport could not subscribe.
        """
        await self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    async def cancel(self) -> None:
        """Unsubscribe (same as ``bus.unsubscribe(self)``)."""
        await self._bus.unsubscribe(self)

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stopped; started by the bus in its task group."""
        if not self._internal:
            self._call = self._bus._wrap_handler(
                self._handler_call(), Receiving(self.pattern, self.group, self._bus)
            )
        try:
            with anyio.CancelScope() as self._hard:
                try:
                    self._source = await self._bus.transport.subscribe(self._spec)
                except Exception as exc:
                    self._error = exc
                    log.error("subscribing to %r failed: %r", self.pattern, exc)
                    return
                finally:
                    self._ready.set()
                if self._stopping:
                    return
                if self._bus.transport.replies_overlap and not self._redelivers:
                    async with anyio.create_task_group() as self._replies:
                        await self._read()  # then the replies still unsent (within the drain)
                    self._replies = None
                else:
                    await self._read()
        finally:
            source, self._source = self._source, None
            if source is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await source.aclose()
                    except Exception as exc:
                        log.warning("closing subscription %r failed: %r", self.pattern, exc)
            self._done.set()

    async def _read(self) -> None:
        if self.concurrency == 1:
            with anyio.CancelScope() as self._reader:
                await self._read_inline()
        else:
            async with anyio.create_task_group() as handlers:
                with anyio.CancelScope() as self._reader:
                    await self._read_concurrent(handlers)

    async def _next(self) -> Delivery | None:
        """The next delivery, or None once the source is closed."""
        source = self._source
        assert source is not None
        delivery = source.ready()
        if delivery is not None:
            return delivery
        try:
            return await source.__anext__()
        except StopAsyncIteration:
            return None
        except Exception as exc:
            return await self._recover(exc)

    async def _recover(self, exc: Exception) -> Delivery | None:
        """Reopen a failed transport subscription with backoff, then read from it again."""
        backoff = Backoff(initial=0.1, cap=5.0)
        while True:
            delay = backoff.next()
            log.error("subscription %r failed: %r; reopening in %.1fs", self.pattern, exc, delay)
            await anyio.sleep(delay)
            source = self._source
            if source is not None:
                try:
                    await source.aclose()
                except Exception as close_error:  # the broken one; the reopen below is what counts
                    log.warning("closing failed subscription %r: %r", self.pattern, close_error)
            try:
                self._source = source = await self._bus.transport.subscribe(self._spec)
                return await source.__anext__()
            except StopAsyncIteration:
                return None
            except Exception as again:
                exc = again

    async def _read_inline(self) -> None:
        """Take deliveries one at a time and handle each in this task.

        The usual message (decoded, unexpired, ours) is handled right here, the steps of
        :meth:`handle` spelled out: this runs once per message, and each coroutine it saves (the
        one for :meth:`handle`, the one for the ack) costs about as much as a small message's
        fields. Everything else goes through :meth:`handle`. A subscription that hands out bare
        messages (``Subscription.take``) is read that way first: a handled message then costs no
        delivery at all, and one that needs settling gets its delivery from ``delivery_of``."""
        handle = self.handle
        call = self._call
        # A plain function with no receive middleware is called as it is: the coroutine that
        # wraps it for everything else would cost as much as the call itself.
        plain: Callable[[Message], Any] | None = getattr(call, "plain", None)
        checkpoint = anyio.lowlevel.checkpoint
        source = self._source
        assert source is not None
        ready = source.ready
        take = _taker(source)
        match = None if source.exact else self._match  # see Subscription.exact
        run = FAIR_RUN  # deliveries left before the next checkpoint
        delivery: Delivery | None
        while True:
            run -= 1
            if not run:
                run = FAIR_RUN
                await checkpoint()
            message = take() if take is not None else None
            if message is None:
                delivery = ready()
                if delivery is None:
                    try:  # the hot path reads the source directly; _next() is the slow path
                        delivery = await source.__anext__()
                    except StopAsyncIteration:
                        return
                    except Exception as exc:
                        delivery = await self._recover(exc)
                        source = self._source or source  # reopened
                        ready = source.ready
                        take = _taker(source)
                        match = None if source.exact else self._match
                    if delivery is None:
                        return
                message = delivery.message
            else:
                delivery = None
            self._busy = 1
            try:
                if (
                    message.ttl is not None
                    or message.reply_to is not None
                    or (delivery is not None and delivery.error is not None)
                    or (match is not None and not match(message.topic))
                ):
                    await handle(delivery if delivery is not None else source.delivery_of(message))
                else:  # no reply_to here: the handler's result answers nothing
                    try:
                        if plain is None:
                            await call(message)
                        else:
                            plain(message)
                    except Exception as exc:
                        if delivery is None:
                            delivery = source.delivery_of(message)
                        await self._after_error(delivery, exc)
                    else:
                        if delivery is not None and not delivery.ack_now():
                            await delivery.ack()
            except Exception as exc:  # a broken ack, a broken reply: log, keep the subscription
                log.exception("settling a delivery on %r failed: %r", self.pattern, exc)
            finally:
                self._busy = 0
            if self._stopping:
                return

    async def _read_concurrent(self, handlers: anyio.abc.TaskGroup) -> None:
        slots = anyio.Semaphore(self.concurrency)
        while True:
            await slots.acquire()
            delivery = await self._next()
            if delivery is None:
                slots.release()
                return
            self._busy += 1
            handlers.start_soon(self._handle_and_release, delivery, slots)

    async def _handle_and_release(self, delivery: Delivery, slots: anyio.Semaphore) -> None:
        try:
            await self.handle(delivery)
        finally:
            self._busy -= 1
            slots.release()

    async def handle(self, delivery: Delivery) -> None:
        """Handle one delivery and settle it; never raises (but lets cancellation through).

        The first attempt is spelled out here rather than through :meth:`_attempt`: this runs once
        per message (per concurrent message: :meth:`_read_inline` handles the usual message
        itself), and a coroutine per call is a large part of what a message costs."""
        try:
            message = delivery.message
            if delivery.error is not None:
                await self._dead(delivery, "undecodable", str(delivery.error))
            elif message.ttl is not None and message.expired():
                await self._dead(delivery, "expired", f"expired after ttl {message.ttl:g}s")
            elif not self._match(message.topic):
                await delivery.ack()  # a broker's broader native match; not ours
            else:
                try:
                    if message.ttl is None and message.reply_to is None:
                        result = await self._call(message)
                    else:
                        result = await self._call_request(message)
                except Exception as exc:
                    await self._after_error(delivery, exc)
                else:
                    if message.reply_to is not None:
                        await self._answered(message, result)
                    if not delivery.ack_now():
                        await delivery.ack()
        except Exception as exc:  # a broken ack, a broken reply: log, keep the subscription
            log.exception("settling a delivery on %r failed: %r", self.pattern, exc)

    async def _call_request(self, message: Message) -> Any:
        """Call the handler for a message with a deadline or a requester: the deadline goes in
        context (see :mod:`.deadlines`), so that requests the handler makes inherit what is left
        of it, and a requester that gives up can cancel the call (see :mod:`.cancellation`)."""
        if message.ttl is None:
            return await self._call_cancellable(message)
        token = _deadline.set(message.timestamp + message.ttl)
        try:
            return await self._call_cancellable(message)
        finally:
            _deadline.reset(token)

    async def _call_cancellable(self, message: Message) -> Any:
        if (
            message.reply_to is None
            or self._internal
            or (self._streams and H_STREAM in message.headers)  # a stream cancels itself
            # a plain function (no receive middleware) never awaits, so a cancel could not reach
            # it: its request skips the cancel scope, which costs ~4 us, a tenth of a request
            or getattr(self._call, "never_waits", False)
        ):
            return await self._call(message)
        key = message.correlation_id or message.id
        cancellations = self._bus._cancellations()
        with anyio.CancelScope() as scope:
            cancel = scope.cancel
            cancellations.enter(key, cancel)
            try:
                return await self._call(message)
            finally:
                cancellations.leave(key, cancel)
        raise HandlerCancelled(f"request {key} on {message.topic!r} was cancelled by its requester")

    async def _after_error(self, delivery: Delivery, exc: Exception) -> None:
        """The handler raised on the first attempt: dead-letter a rejection, retry the rest."""
        failure = await self._refused(delivery, exc)
        if failure is not None:
            await self._failed(delivery, failure)

    async def _attempt(self, delivery: Delivery, message: Message) -> Exception | None:
        """Call the handler once (a retry on an at-most-once transport). On success answer and
        ack; on ``RejectMessage`` dead-letter; on any other error return it, unsettled."""
        try:
            if message.ttl is None and message.reply_to is None:
                result = await self._call(message)
            else:
                result = await self._call_request(message)
        except Exception as exc:
            return await self._refused(delivery, exc)
        if message.reply_to is not None:
            await self._answered(message, result)
        if not delivery.ack_now():
            await delivery.ack()
        return None

    async def _refused(self, delivery: Delivery, exc: Exception) -> Exception | None:
        """A handler's exception: ``RejectMessage`` dead-letters at once (None), others are
        returned for retry."""
        if isinstance(exc, RejectMessage):
            await self._dead(delivery, "rejected", str(exc) or "rejected by the handler")
            return None
        if isinstance(exc, PayloadValidationError):  # would fail on every attempt
            await self._dead(delivery, "invalid", str(exc))
            return None
        if isinstance(exc, (HandlerCancelled, StreamInterrupted)):
            # The requester has gone, or has the error frame: settle, do not retry.
            self._bus._forget_reply(delivery.message)
            await delivery.ack()
            return None
        return exc

    async def _answered(self, message: Message, result: Any) -> None:
        """A request was handled: send the handler's return value as its reply, if any (in the
        background where the transport asks for it: see ``Transport.replies_overlap``)."""
        if result is not None:
            replies = self._replies
            if replies is not None:
                await self._reply_slots.acquire()  # at most REPLIES_IN_FLIGHT unsent
                replies.start_soon(self._answer_in_background, message, result)
                return
            await self._bus._answer(message, result)
        self._bus._forget_reply(message)

    async def _answer_in_background(self, message: Message, result: Any) -> None:
        try:
            await self._bus._answer(message, result)
        except Exception as exc:  # as a reply sent inline: logged, the subscription goes on
            log.exception("replying to %s on %r failed: %r", message.id, self.pattern, exc)
        finally:
            self._reply_slots.release()
            self._bus._forget_reply(message)

    async def _failed(self, delivery: Delivery, failure: Exception) -> None:
        """Nack with backoff (or, on at-most-once brokers, retry here), then dead-letter."""
        attempt = delivery.attempt
        while True:
            error = f"{type(failure).__name__}: {failure}"
            if attempt >= self.retry.max_attempts:
                break
            message = delivery.message
            if message.ttl is not None and (message.remaining() or 0.0) <= self.retry.delay(
                attempt
            ):
                # No retry would start before the deadline: give up now, as expired.
                await self._dead(delivery, "expired", f"deadline reached after {error}")
                return
            log.warning(
                "handler for %r failed (attempt %d of %d): %s",
                self.pattern,
                attempt,
                self.retry.max_attempts,
                error,
            )
            delay = self.retry.delay(attempt)
            if self._bus._retry_layers:
                self._bus._retrying(delivery.message.evolve(attempt=attempt), failure, delay)
            if self._redelivers:
                await delivery.nack(delay)
                return
            # An at-most-once broker would drop a nacked message: retry here instead.
            await anyio.sleep(delay)
            attempt += 1
            again = await self._attempt(delivery, delivery.message.evolve(attempt=attempt))
            if again is None:
                return
            failure = again
        log.error(
            "handler for %r failed for good after %d attempts: %s", self.pattern, attempt, error
        )
        reason: DeadLetterReason = (
            "max_attempts" if self.retry.max_attempts > 1 else "handler_error"
        )
        await self._dead(delivery, reason, error)

    async def _dead(self, delivery: Delivery, reason: DeadLetterReason, error: str) -> None:
        """Dead-letter the delivery, and settle it only once the letter is stored: otherwise an
        at-least-once transport gets it back after ``retry.max_delay`` (paced, never a hot loop,
        and never a stalled queue), and an at-most-once one counts and logs the loss."""
        attempts = max(delivery.attempt, self.retry.max_attempts if reason == "max_attempts" else 1)
        message = delivery.message
        dead = DeadLetter(message, reason, error, attempts, self.pattern)
        if await self._bus._dead_letter(dead):
            await delivery.ack()
        elif self._redelivers:
            log.error(
                "dead letter of %s from %r (%s) was not stored: the message is given back and "
                "returns in %gs",
                message.id,
                message.topic,
                reason,
                self.retry.max_delay,
            )
            await delivery.nack(self.retry.max_delay)
        else:
            self._bus._dead_letters_lost += 1
            log.error(
                "dead letter of %s from %r (%s) was not stored and the transport cannot redeliver: "
                "the message is LOST (%d lost on this bus)",
                message.id,
                message.topic,
                reason,
                self._bus._dead_letters_lost,
            )
            await delivery.ack()

    # -- stopping -------------------------------------------------------------------------------

    async def stop(self, drain_timeout: float) -> None:
        """Stop taking deliveries; let handlers in flight finish within ``drain_timeout`` seconds,
        then cancel them (their deliveries stay unacknowledged, so at-least-once transports
        redeliver them)."""
        self._stopping = True
        if self._done.is_set():
            return
        if self._reader is not None and (self.concurrency > 1 or not self._busy):
            self._reader.cancel()
        elif self._reader is None and self._hard is not None and self._ready.is_set():
            self._hard.cancel()
        with anyio.move_on_after(drain_timeout):
            await self._done.wait()
        if not self._done.is_set():
            if self._busy:
                log.warning(
                    "%d handler(s) of %r did not finish within %gs; cancelled",
                    self._busy,
                    self.pattern,
                    drain_timeout,
                )
            else:  # e.g. a Kafka member whose close waits for a group join in progress
                log.warning(
                    "the subscription to %r did not close within %gs (no handler was running: "
                    "the transport was still closing it); cancelled",
                    self.pattern,
                    drain_timeout,
                )
            if self._hard is not None:
                self._hard.cancel()
            await self._done.wait()
