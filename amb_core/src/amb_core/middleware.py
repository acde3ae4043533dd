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

The first middleware in the list is the outermost: it sees a published message first and a received
one first. Middleware comes from ``MessageBus(middleware=[...])`` or, when that is not given, from
plugins through the ``amb_register_middleware`` hook. A layer that does not override a method costs
nothing on that edge, and a bus without middleware calls the transport and the handlers directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .message import Message

__all__ = ["Call", "Middleware", "Send", "wrap_call", "wrap_send"]

Send = Callable[[Message], Awaitable[None]]
"""The next step of publishing: hands the message on (in the end, to the transport)."""

Call = Callable[[Message], Awaitable[Any]]
"""The next step of receiving: calls the next layer (in the end, the handler) and returns its result."""


class Middleware:
    """Base class: override either method; the defaults pass the message through unchanged."""

    async def on_publish(self, message: Message, send: Send) -> None:
        """Called for every message the bus sends; call ``await send(message)`` to send it on."""
        await send(message)

    async def on_receive(self, message: Message, call: Call) -> Any:
        """Called for every handler invocation; ``return await call(message)`` to run it."""
        return await call(message)


def _overrides(layer: Middleware, name: str) -> bool:
    return getattr(type(layer), name, None) is not getattr(Middleware, name)


def wrap_send(middleware: Sequence[Middleware], send: Send) -> Send:
    """``send`` wrapped by every layer that overrides ``on_publish``, the first outermost."""
    for layer in reversed(middleware):
        if _overrides(layer, "on_publish"):
            send = _bind(layer.on_publish, send)
    return send


def wrap_call(middleware: Sequence[Middleware], call: Call) -> Call:
    """``call`` wrapped by every layer that overrides ``on_receive``, the first outermost."""
    for layer in reversed(middleware):
        if _overrides(layer, "on_receive"):
            call = _bind(layer.on_receive, call)
    return call


def _bind(
    step: Callable[[Message, Any], Awaitable[Any]], inner: Callable[[Message], Awaitable[Any]]
) -> Callable[[Message], Awaitable[Any]]:
    async def layer(message: Message) -> Any:
        return await step(message, inner)

    return layer
