"""Request/reply for brokers without a native one: one long-lived reply inbox per bus.

The bus subscribes once (lazily, at its first request) to ``_INBOX.<bus id>``; every request carries
that topic as ``reply_to`` and a fresh ``correlation_id``; replies are matched to waiting requesters
through a dictionary, so any number of requests share the inbox concurrently and no connection or
subscription is made per request (FastStream's Redis backend opens a connection per request).
A reply that arrives after its requester gave up is dropped with a debug log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import anyio

from .cancellation import H_CONTROL
from .deadletter import RetryPolicy
from .errors import (
    NoRespondersError,
    NotConnectedError,
    RemoteHandlerError,
    RequestTimeoutError,
)
from .message import Message, new_id

if TYPE_CHECKING:
    from .bus import MessageBus
    from .subscriber import Subscriber

__all__ = [
    "H_ERROR",
    "H_ERROR_REASON",
    "H_NO_RESPONDERS",
    "INBOX_PREFIX",
    "Inbox",
    "Receiver",
    "raise_for_error_reply",
]

log = logging.getLogger("amb.inbox")
INBOX_PREFIX = "_INBOX"
H_ERROR = "amb-error"
H_ERROR_REASON = "amb-error-reason"
H_NO_RESPONDERS = "amb-no-responders"
"""Set by a transport on a message it puts in the inbox when the broker reports at once that a
request reached no subscriber (NATS core); the request's correlation id says which."""


class Receiver(Protocol):
    """What waits in the inbox for the replies to one correlation id."""

    def deliver(self, reply: Message) -> None:
        """A reply (or a frame of a streamed reply) has arrived."""

    def close(self) -> None:
        """The bus is closing: no reply can come any more."""


class _Waiter:
    """A plain request's receiver: the first reply wins."""

    __slots__ = ("closed", "event", "reply")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.reply: Message | None = None
        self.closed = False

    def deliver(self, reply: Message) -> None:
        if self.reply is None:
            self.reply = reply
            self.event.set()

    def close(self) -> None:
        self.closed = True
        self.event.set()


def raise_for_error_reply(topic: str, reply: Message) -> Message:
    """Return ``reply``, or raise :class:`RemoteHandlerError` when it reports a handler failure."""
    error = reply.headers.get(H_ERROR)
    if error is not None:
        raise RemoteHandlerError(topic, reply.headers.get(H_ERROR_REASON, "error"), error)
    return reply


class Inbox:
    """The reply inbox of one bus."""

    def __init__(self, bus: MessageBus) -> None:
        self.topic = f"{INBOX_PREFIX}.{bus.id}"
        self._bus = bus
        self._waiters: dict[str, Receiver] = {}
        self._subscriber: Subscriber | None = None
        self._lock = anyio.Lock()

    async def ready(self) -> Inbox:
        """Subscribe the inbox, once (later calls return at once)."""
        if self._subscriber is not None and self._subscriber.active:
            return self
        async with self._lock:
            if self._subscriber is None or not self._subscriber.active:
                self._subscriber = self._bus.subscribe(
                    self.topic, self._on_reply, retry=RetryPolicy(max_attempts=1), internal=True
                )
                await self._subscriber
        return self

    def register(self, correlation_id: str, receiver: Receiver) -> None:
        """Hand the replies to ``correlation_id`` to ``receiver`` until :meth:`unregister`."""
        self._waiters[correlation_id] = receiver

    def unregister(self, correlation_id: str) -> None:
        self._waiters.pop(correlation_id, None)

    async def cancel_all(self) -> None:
        """Tell the responders of every request still waiting that nobody will read the answer
        (the bus is closing); see :mod:`.cancellation`."""
        cancellations = self._bus._cancellations()
        for correlation_id, waiter in list(self._waiters.items()):
            try:
                await cancellations.send_cancel(correlation_id, getattr(waiter, "responder", None))
            except Exception as exc:  # closing: the responder's deadline will stop it
                log.debug("could not cancel %s while closing: %r", correlation_id, exc)

    def close(self) -> None:
        """Wake every waiting requester: the bus is closing, no reply can come any more."""
        for waiter in list(self._waiters.values()):
            waiter.close()

    def _on_reply(self, reply: Message) -> None:
        """A plain function: the inbox's subscriber calls it without a coroutine per reply."""
        headers = reply.headers
        if headers and H_CONTROL in headers:  # a requester's credit or cancel for our stream
            self._bus._cancellations().on_control(reply)
            return
        waiter = self._waiters.get(reply.correlation_id or "")
        if waiter is None:
            log.debug("late or unknown reply %s dropped", reply.correlation_id)
            return
        waiter.deliver(reply)

    async def request(
        self, message_fields: dict[str, object], topic: str, timeout: float
    ) -> Message:
        """Publish a request and wait for its reply.

        :raises RequestTimeoutError: when no reply arrives within ``timeout``.
        :raises RemoteHandlerError: when the responder reports a failure.
        :raises NotConnectedError: when the bus closes while the request waits.
        """
        await self.ready()
        correlation_id = new_id()
        waiter = _Waiter()
        self._waiters[correlation_id] = waiter
        # Whether the request may have reached a responder: from the moment publish starts, not
        # the moment it returns. A broker hands the request on before its acknowledgement
        # reaches us (SQS: the handler starts before the HTTP reply), so a request given up
        # while publish waits must be cancelled too; only a publish that raised sent nothing.
        maybe_sent = False
        try:
            with anyio.move_on_after(timeout):
                maybe_sent = True
                try:
                    await self._bus.publish(
                        topic,
                        correlation_id=correlation_id,
                        reply_to=self.topic,
                        **message_fields,  # type: ignore[arg-type]
                    )
                except Exception:
                    maybe_sent = False
                    raise
                await waiter.event.wait()
        except BaseException:
            if maybe_sent and waiter.reply is None:  # cancelled: tell the responder
                self._bus._cancellations().cancel_later(correlation_id)
            raise
        finally:
            del self._waiters[correlation_id]
        if waiter.closed:
            raise NotConnectedError(f"the bus closed while a request on {topic!r} waited")
        if waiter.reply is None:
            if maybe_sent:
                self._bus._cancellations().cancel_later(correlation_id)
            raise RequestTimeoutError(topic, timeout)
        if H_NO_RESPONDERS in waiter.reply.headers:
            raise NoRespondersError(topic)
        return raise_for_error_reply(topic, waiter.reply)
