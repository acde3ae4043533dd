"""Publish and receive middleware: code that sees every message a bus sends or hands to a handler.

Why it exists: concerns that cut across every agent — trace-context propagation, metrics, audit
logs, tenant or auth headers, payload signing — belong in one place, not copied into each handler
and each ``publish`` call. A :class:`Middleware` wraps the two edges of the bus, onion style:

* :meth:`Middleware.on_publish` wraps every message the bus sends: ``publish``, requests, replies,
  routed forwards and dead letters. It may change the message (``message.evolve(...)``), send it
  several times, or refuse it by raising (the caller of ``publish`` gets the error).
* :meth:`Middleware.on_receive` wraps every call of a subscribed handler (not the bus's own reply
  inbox). Its return value is the handler's (a request's answer); an exception it raises counts as
  the handler's failure, so retries and dead letters apply.

A handler that streams its answer (an async generator, see :mod:`.stream_responder`) is wrapped
whole: ``call(message)`` returns when the stream has ended (``None``, or the chunks as a list for a
plain request), and each chunk passes :meth:`Middleware.on_publish` as a frame while it is sent.

A layer may also override :meth:`Middleware.on_request`, which wraps a whole ``bus.request`` on the
requester's side (from publishing the request to its reply or error): the request's own publish
passes :meth:`Middleware.on_publish` inside it, so a tracer's request span can parent it and a meter
can time the round trip.

Besides the edges, a layer may override the *decision* hooks, which the bus calls after the
fact and which cannot change the outcome: :meth:`Middleware.on_retry` (a handler failed and the
message will be tried again after a delay) and :meth:`Middleware.on_dead_letter` (a message is being
dead-lettered, with its reason). While a handler runs, :func:`current_receive` tells a layer which
subscription (pattern and group) took the message. :meth:`Middleware.for_bus` lets a layer that
needs to know its bus (a tracer naming the messaging system) make a copy per bus at connect.

The first middleware in the list is the outermost: it sees a published message first and a received
one first. A bus's layers are the plugins' (the ``amb_register_middleware`` hook), outermost, then
its own ``MessageBus(middleware=[...])``: an application's layers never switch a plugin's tracing
off; ``MessageBus(plugin_middleware=False)`` does, for that bus. A layer that does not override a
method costs nothing on that edge, and a bus without middleware calls the transport and the
handlers directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import attrs

from .message import Message

if TYPE_CHECKING:
    from .bus import MessageBus
    from .deadletter import DeadLetter

__all__ = [
    "Call",
    "Middleware",
    "Receiving",
    "Request",
    "Send",
    "current_receive",
    "overrides",
    "wrap_call",
    "wrap_request",
    "wrap_send",
]

Send = Callable[[Message], Awaitable[None]]
"""The next step of publishing: hands the message on (in the end, to the transport)."""

Call = Callable[[Message], Awaitable[Any]]
"""The next step of receiving: calls the next layer (in the end, the handler) and returns its result."""

Request = Callable[[], Awaitable[Message]]
"""The rest of a request: publishes it, waits, and returns the reply (or raises)."""


@attrs.frozen
class Receiving:
    """What a receive layer may want to know beyond the message: the subscription that took it.

    :ivar pattern: the subscribed pattern (``orders.*``), not the message's topic.
    :ivar group: the consumer group, or None for a fan-out subscription.
    :ivar bus: the bus whose subscription it is.
    """

    pattern: str
    group: str | None
    bus: MessageBus


_receiving: ContextVar[Receiving | None] = ContextVar("amb_receiving", default=None)


def current_receive() -> Receiving | None:
    """The subscription whose handler is running (inside :meth:`Middleware.on_receive` and the
    handler), or None outside one. Set only on buses that have receive middleware."""
    return _receiving.get()


class Middleware:
    """Base class: override any method; the defaults pass the message through unchanged."""

    async def on_publish(self, message: Message, send: Send) -> None:
        """Called for every message the bus sends; call ``await send(message)`` to send it on."""
        await send(message)

    async def on_receive(self, message: Message, call: Call) -> Any:
        """Called for every handler invocation; ``return await call(message)`` to run it."""
        return await call(message)

    async def on_request(self, topic: str, request: Request) -> Message:
        """Called for every ``bus.request`` on ``topic`` (not streams or gathers); ``return await
        request()`` to publish it and wait for the reply. The request's publish passes
        :meth:`on_publish` inside this call, in the same context."""
        return await request()

    def on_retry(self, message: Message, error: BaseException, delay: float) -> None:
        """A handler failed on attempt ``message.attempt`` and the message will be tried again in
        ``delay`` seconds (by the broker's redelivery, or by the bus on at-most-once transports).
        Called after the attempt's :meth:`on_receive` has returned (it saw the error raised)."""

    def on_dead_letter(self, dead: DeadLetter) -> None:
        """``dead.message`` is being dead-lettered for ``dead.reason`` after ``dead.attempts``
        attempts (called before the letter is stored)."""

    def for_bus(self, bus: MessageBus) -> Middleware:
        """The layer to use on ``bus``: this one (the default), or a copy that knows its bus. Called
        at ``connect()``; layers registered by plugins are shared by every bus of the process."""
        return self


def overrides(layer: Middleware, name: str) -> bool:
    """True when ``layer`` overrides the :class:`Middleware` method ``name`` (the bus calls only
    the hooks a layer overrides, so an unused hook costs nothing)."""
    return getattr(type(layer), name, None) is not getattr(Middleware, name)


_overrides = overrides


def wrap_send(middleware: Sequence[Middleware], send: Send) -> Send:
    """``send`` wrapped by every layer that overrides ``on_publish``, the first outermost."""
    for layer in reversed(middleware):
        if _overrides(layer, "on_publish"):
            send = _bind(layer.on_publish, send)
    return send


def wrap_call(
    middleware: Sequence[Middleware], call: Call, receiving: Receiving | None = None
) -> Call:
    """``call`` wrapped by every layer that overrides ``on_receive``, the first outermost; with
    ``receiving``, :func:`current_receive` returns it while the layers and the handler run."""
    wrapped = call
    for layer in reversed(middleware):
        if _overrides(layer, "on_receive"):
            wrapped = _bind(layer.on_receive, wrapped)
    if wrapped is call or receiving is None:
        return wrapped
    inner = wrapped

    async def within_receiving(message: Message) -> Any:
        token = _receiving.set(receiving)
        try:
            return await inner(message)
        finally:
            _receiving.reset(token)

    return within_receiving


def wrap_request(middleware: Sequence[Middleware], topic: str, request: Request) -> Request:
    """``request`` wrapped by every layer that overrides ``on_request``, the first outermost."""
    for layer in reversed(middleware):
        if _overrides(layer, "on_request"):
            request = _bind_request(layer, topic, request)
    return request


def _bind_request(layer: Middleware, topic: str, inner: Request) -> Request:
    async def step() -> Message:
        return await layer.on_request(topic, inner)

    return step


def _bind(
    step: Callable[[Message, Any], Awaitable[Any]], inner: Callable[[Message], Awaitable[Any]]
) -> Callable[[Message], Awaitable[Any]]:
    async def layer(message: Message) -> Any:
        return await step(message, inner)

    return layer
