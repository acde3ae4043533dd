"""Core NATS subscriptions: at-most-once, pushed by the server, native wildcards and queue groups.

Messages reach us through a nats-py callback that appends to a deque; the subscriber's loop pops
from it, so a delivery costs one deque hop and no task. The deque is bounded: when the handler falls
behind by ``limit`` messages the callback waits, nats-py's own pending queue fills, and past its
limits the server marks us a slow consumer and drops messages. That is what core NATS promises
(at-most-once) and why this mode declares no ``at_least_once``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from amb_core.transport import Delivery, Subscription, decode_delivery

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsSubscription

__all__ = ["CoreSubscription"]

log = logging.getLogger("amb.nats")


class CoreSubscription(Subscription):
    """One core NATS subscription (``queue`` set for a consumer group)."""

    def __init__(self, limit: int = 10_000, *, native_reply: bool = True) -> None:
        self._items: deque[Msg] = deque()
        self._limit = max(limit, 1)
        self._waiter: asyncio.Future[None] | None = None
        self._space: asyncio.Future[None] | None = None
        self._closed = False
        self._native_reply = native_reply
        self.sub: NatsSubscription | None = None

    async def on_message(self, msg: Msg) -> None:
        """The nats-py callback: queue the message, wake the reader, wait when far behind."""
        self._items.append(msg)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if len(self._items) >= self._limit and not self._closed:
            self._space = asyncio.get_running_loop().create_future()
            await self._space

    async def __anext__(self) -> Delivery:
        items = self._items
        while not items:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        msg = items.popleft()
        space = self._space
        if space is not None and len(items) < self._limit // 2:
            self._space = None
            if not space.done():
                space.set_result(None)
        message, error = decode_delivery(msg.data, msg.headers, msg.subject)
        if self._native_reply and msg.reply and message.reply_to is None:
            # A native request (nc.request): the reply subject is the requester's inbox.
            message = message.evolve(reply_to=msg.reply)
        return Delivery(message, 1, error)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for future in (self._waiter, self._space):
            if future is not None and not future.done():
                future.set_result(None)
        sub, self.sub = self.sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # a closed connection has nothing left to unsubscribe
                log.debug("unsubscribe failed: %r", exc)
        self._items.clear()

    def attach(self, sub: Any) -> None:
        self.sub = sub
