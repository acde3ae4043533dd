"""Telling a responder that its requester has gone: cancellation across the bus.

A requester that stops waiting (its ``request()`` was cancelled or timed out, or it stopped reading
a stream) sends a *control message*: a message with the request's correlation id and the header
``amb-control: cancel``. Where it goes:

* to the responder's own reply inbox, when the requester knows it (a streamed reply's frames carry
  it as ``reply_to``): one message, to one bus;
* otherwise to the broadcast topic ``_INBOX.cancel``, which every bus that has served a request
  listens to (the requester of a plain request cannot know which member of a group took it).

The responder looks the correlation id up among the requests its handlers are running for and
cancels that handler (an anyio cancel scope; a stream's generator is closed at its next ``yield``).
A request counts as possibly delivered from the moment its publish starts: one given up while
the broker has not yet acknowledged it (the handler may already run: SQS delivers before its HTTP
reply) is cancelled too; only a publish that raised is taken as not sent.
A cancelled handler's request is acknowledged (it is not retried: its requester has gone) and no
reply is sent. The race is inherent and documented: a reply already sent stays sent (the requester
drops it), and a handler that has returned cannot be cancelled.

A bus starts listening on the broadcast topic the first time it serves a request, in the
background: a cancel sent before that subscription is established (on Kafka or SQS, seconds after
the bus's very first request) is not seen, and that handler runs to its end. A cancel that
overtakes its request (they travel on different topics, which no broker orders against each
other: an SQS request redelivered, a Kafka request behind a backlog) is remembered for
:data:`EARLY_CANCEL_SECONDS` (the last :data:`EARLY_CANCEL_KEPT` of them): the request, when it
comes, has its handler cancelled at once. Costs nothing for messages that are not requests; a
request pays one dictionary entry while its handler runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .deadletter import RetryPolicy
from .message import Message, build_message, new_id
from .topics import validate_topic

if TYPE_CHECKING:
    from .bus import MessageBus
    from .subscriber import Subscriber

__all__ = [
    "CANCEL_TOPIC",
    "EARLY_CANCEL_KEPT",
    "EARLY_CANCEL_SECONDS",
    "H_CONTROL",
    "H_SEQ",
    "Cancellations",
    "HandlerCancelled",
]

log = logging.getLogger("amb.cancellation")
CANCEL_TOPIC = "_INBOX.cancel"
H_CONTROL = "amb-control"
"""Header of a control message: ``cancel``, or ``ack`` (with ``amb-seq``: a stream's credit)."""
H_SEQ = "amb-seq"
"""A streamed reply's frame number (1 first), and in an ``ack`` the last frame the requester took."""
EARLY_CANCEL_SECONDS = 60.0
"""How long a cancel that came before its request is kept, waiting for the request."""
EARLY_CANCEL_KEPT = 1024
"""How many such cancels are kept at most (the oldest go first): every bus hears every broadcast
cancel, most of them for requests other buses serve, so the memory is bounded."""


class HandlerCancelled(Exception):
    """Raised where a request handler was cancelled by its requester: the subscriber acknowledges
    the request and sends no reply (internal; never reaches application code)."""


class Cancellations:
    """The requests one bus is serving, by correlation id, and the way to cancel them."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self.running: dict[str, list[Callable[[], None]]] = {}
        self.acks: dict[str, Callable[[int], None]] = {}
        self._listener: Subscriber | None = None
        self._early: dict[str, float] = {}  # cancels with no handler running yet, by arrival

    # -- responder side --------------------------------------------------------------------------

    def listen(self) -> None:
        """Start listening on the broadcast cancel topic, once (not awaited: see the module)."""
        if self._listener is None:
            self._listener = self._bus.subscribe(
                CANCEL_TOPIC, self.on_control, retry=RetryPolicy(max_attempts=1), internal=True
            )

    async def listening(self) -> None:
        """Start listening on the broadcast cancel topic, and wait until the broker has the
        subscription (for a service that must hear cancels of its very first requests)."""
        self.listen()
        assert self._listener is not None
        await self._listener

    def on_control(self, message: Message) -> None:
        """A control message (broadcast, or sent to this bus's inbox): cancel or credit. A plain
        function: the subscriber calls it without a coroutine (see ``Subscriber._read_inline``)."""
        kind = message.headers.get(H_CONTROL)
        key = message.correlation_id or ""
        if kind == "cancel":
            cancels = self.running.get(key)
            if not cancels:
                self._remember_early(key)
                return
            for cancel in cancels:
                log.debug("request %s cancelled by its requester", key)
                cancel()
        elif kind == "ack":
            credit = self.acks.get(key)
            seq = message.headers.get(H_SEQ, "")
            if credit is not None and seq.isdigit():
                credit(int(seq))

    def enter(self, key: str, cancel: Callable[[], None]) -> None:
        """Record a handler running for the request ``key``; ``cancel`` stops it."""
        self.running.setdefault(key, []).append(cancel)
        if self._listener is None:
            self.listen()
        if self._early:
            heard = self._early.pop(key, None)
            if heard is not None and time.monotonic() - heard < EARLY_CANCEL_SECONDS:
                log.debug("request %s was cancelled before it came", key)
                cancel()

    def _remember_early(self, key: str) -> None:
        """Keep a cancel that found no handler: its request may still be on its way."""
        early = self._early
        early[key] = time.monotonic()
        if len(early) > EARLY_CANCEL_KEPT:
            del early[next(iter(early))]

    def leave(self, key: str, cancel: Callable[[], None]) -> None:
        """The handler recorded by :meth:`enter` has finished."""
        cancels = self.running.get(key)
        if cancels is not None:
            cancels.remove(cancel)
            if not cancels:
                del self.running[key]

    # -- requester side --------------------------------------------------------------------------

    async def send_cancel(self, correlation_id: str, to: str | None = None) -> None:
        """Tell the responder of ``correlation_id`` to stop (at ``to``, or by broadcast)."""
        await self.send_control(correlation_id, "cancel", to or CANCEL_TOPIC)

    async def send_control(
        self, correlation_id: str, kind: str, to: str, seq: int | None = None
    ) -> None:
        """Publish one control message to ``to`` (an inbox or the broadcast topic)."""
        message = self._control(correlation_id, kind, to, seq)
        await self._bus._publish_message(message, one_off=True)

    def _control(self, correlation_id: str, kind: str, to: str, seq: int | None) -> Message:
        headers = {H_CONTROL: kind} if seq is None else {H_CONTROL: kind, H_SEQ: str(seq)}
        return build_message(
            to,
            None,
            headers,
            new_id(),
            correlation_id,
            None,
            time.time(),
            self._bus.name,
            None,
            1,
            0,
            None,
        )

    def cancel_later(self, correlation_id: str, to: str | None = None) -> None:
        """:meth:`send_cancel` in the bus's background, for code that cannot wait (a cancelled
        task's cleanup, a stream dropped without ``aclose``)."""
        self.control_later(correlation_id, "cancel", to or CANCEL_TOPIC)

    def control_later(
        self, correlation_id: str, kind: str, to: str, seq: int | None = None
    ) -> None:
        """:meth:`send_control` in the bus's background, so that the caller does not wait for the
        broker; a failure is logged (a lost credit is re-sent with the next; a lost cancel leaves
        the responder to its deadline)."""
        bus = self._bus
        tg = bus._tg
        if tg is None or bus._state != "connected":
            return
        send_now = bus._send_now
        if send_now is not None:  # sent at once where the transport needs no wait: no task
            try:
                validate_topic(to, remember=False)
                if send_now(self._control(correlation_id, kind, to, seq)):
                    return
            except Exception as exc:
                log.debug("could not send %s for request %s: %r", kind, correlation_id, exc)
                return
        tg.start_soon(self._send_quietly, correlation_id, kind, to, seq)

    async def _send_quietly(self, correlation_id: str, kind: str, to: str, seq: int | None) -> None:
        try:
            await self.send_control(correlation_id, kind, to, seq)
        except Exception as exc:
            log.debug("could not send %s for request %s: %r", kind, correlation_id, exc)
