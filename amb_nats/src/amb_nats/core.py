"""Core NATS subscriptions: at-most-once, pushed by the server, native wildcards and queue groups.

The subscription is opened without a callback and read straight from nats-py's pending queue, so a
delivery costs one task wake-up (a callback would add a second: nats-py's dispatcher task, then
ours). That queue is bounded by nats-py's pending limits; past them nats-py reports a slow consumer
and drops messages, and the server does the same to a client that stops reading. That is what core
NATS promises (at-most-once), and why this mode declares no ``at_least_once``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from amb_core.errors import DecodeError
from amb_core.transport import Delivery, Subscription, decode_delivery, undecodable
from amb_core.wire import H_REPLY_TO, decode_lines

from ._client import HEADER_LINE_SIZE as _BLOCK_AT

if TYPE_CHECKING:
    from nats.aio.subscription import Subscription as NatsSubscription

__all__ = ["CoreSubscription"]

log = logging.getLogger("amb.nats")


class CoreSubscription(Subscription):
    """One core NATS subscription (with a queue group for a consumer group).

    :param native_reply: a message's NATS reply subject becomes its ``reply_to`` (core mode: that is
        how ``nc.request`` asks); off in JetStream mode, where the reply subject is the ack subject.
    """

    def __init__(self, sub: NatsSubscription, *, native_reply: bool = True) -> None:
        self._sub: Any = sub
        self._queue: asyncio.Queue[Any] = sub._pending_queue
        self._closed = False
        self._native_reply = native_reply
        deliver_raw = getattr(sub._conn, "deliver_raw", None)
        self._raw = deliver_raw is not None and deliver_raw(sub._id)

    def ready(self) -> Delivery | None:
        """A message nats-py has already queued, without a coroutine (see
        ``Subscription.ready``); None when there is none or the subscription is closed."""
        queue = self._queue
        if self._closed or queue.empty():
            return None
        msg = queue.get_nowait()
        if msg is None:  # the wake-up put by aclose(): keep it for __anext__
            queue.put_nowait(None)
            return None
        return self._delivery(msg)

    async def __anext__(self) -> Delivery:
        queue = self._queue
        if queue.empty():
            if self._closed:
                raise StopAsyncIteration
            msg = await queue.get()
        else:
            msg = queue.get_nowait()
        if msg is None:  # the wake-up put by aclose()
            raise StopAsyncIteration
        return self._delivery(msg)

    def _delivery(self, msg: Any) -> Delivery:
        """A queued message, as nats-py's ``Msg`` or as the raw tuple of bytes the fast client
        queues for this subscription (see ``_FastHeadersClient.deliver_raw``)."""
        if type(msg) is tuple:
            subject, reply, data, block = msg
            self._sub._pending_size -= len(data)
            text = block[_BLOCK_AT:].decode("utf-8", "replace") if block else ""
            # A native request (nc.request): the reply subject is the requester's inbox,
            # unless the headers name another.
            native = reply.decode() if reply and self._native_reply else None
            topic = subject.decode()
            try:
                return Delivery(decode_lines(data, text, topic, 1, native), 1, None)
            except DecodeError as exc:
                return Delivery(undecodable(data, topic), 1, exc)
        data = msg.data
        self._sub._pending_size -= len(data)
        headers = msg.headers
        if self._native_reply and msg.reply:
            # A native request (nc.request): the reply subject is the requester's inbox.
            if headers is None:
                headers = {H_REPLY_TO: msg.reply}
            elif H_REPLY_TO not in headers:
                headers[H_REPLY_TO] = msg.reply
        message, error = decode_delivery(data, headers, msg.subject)
        return Delivery(message, 1, error)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._raw:
            self._sub._conn.forget_raw(self._sub._id)
        try:
            await self._sub.unsubscribe()
        except Exception as exc:  # a closed connection has nothing left to unsubscribe
            log.debug("unsubscribe failed: %r", exc)
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:  # a reader is not waiting then: it finds the queue, then closed
            log.debug("no room for the wake-up of a closed subscription; none needed")
