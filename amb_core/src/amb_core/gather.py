"""Scatter-gather: one request, every responder's answer.

``bus.gather(topic, payload, timeout=2)`` sends one request to whoever subscribes to ``topic``
(every fan-out subscriber, and one member of each consumer group, as for any publish) and hands
out the replies as they arrive::

    async for reply in bus.gather("agents.pricing", {"sku": "A7"}, timeout=2, max_replies=3):
        print(reply.sender, reply.payload)

    replies = await bus.gather("agents.pricing", {"sku": "A7"}, timeout=2)  # a list

It ends at ``timeout`` (which travels as the request's deadline, so a responder that takes it too
late does not answer) or once ``max_replies`` replies came. No responder is not an error: the
result is empty (at once where the broker reports it: NATS core). Each reply's ``sender`` names the responding bus (its ``name``, else its id). A
reply reporting that the responder's handler failed is not handed out: it is kept in
:attr:`Gather.failures` as a :class:`RemoteHandlerError`. A reply delivered twice (a broker that
may duplicate) is handed out once.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from .conversation import InboxConversation
from .errors import ConfigurationError, NotConnectedError, RemoteHandlerError
from .inbox import H_ERROR, H_NO_RESPONDERS, raise_for_error_reply
from .message import Message

if TYPE_CHECKING:
    from .bus import MessageBus

__all__ = ["Gather"]


class _Replies:
    """The inbox's receiver for one gather: every distinct reply, in arrival order."""

    __slots__ = ("closed", "queue", "seen", "wake")

    def __init__(self) -> None:
        self.queue: list[Message] = []
        self.seen: set[str] = set()
        self.closed = False
        self.wake = anyio.Event()

    def deliver(self, reply: Message) -> None:
        if reply.id in self.seen:
            return
        self.seen.add(reply.id)
        self.queue.append(reply)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class Gather(InboxConversation):
    """The replies to one scatter-gather request: iterate them, or ``await`` for the list.

    Made by :meth:`MessageBus.gather`; the request is sent when it is first iterated, entered or
    awaited. ``failures`` lists the responders whose handler failed.
    """

    def __init__(
        self,
        bus: MessageBus,
        topic: str,
        payload: Any,
        *,
        timeout: float,
        max_replies: int | None,
        headers: Mapping[str, str] | None,
        key: str | None,
    ) -> None:
        if max_replies is not None and max_replies < 1:
            raise ConfigurationError("max_replies must be at least 1 (or None for no limit)")
        super().__init__(bus, topic, payload, timeout=timeout, headers=headers, key=key)
        self.failures: list[RemoteHandlerError] = []
        self._max = max_replies
        self._replies: _Replies | None = None
        self._handed = 0

    def __aiter__(self) -> Gather:
        return self

    async def __aenter__(self) -> Gather:
        if self._replies is None:
            await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._end()

    def __await__(self) -> Generator[Any, None, list[Message]]:
        return self.collect().__await__()

    async def collect(self) -> list[Message]:
        """Every reply until the deadline or ``max_replies``, as a list."""
        return [reply async for reply in self]

    async def _start(self) -> None:
        timeout = self._budget()
        if timeout <= 0:
            self._done = True
            return
        self._replies = _Replies()
        await self._send(self._replies, timeout)

    def _end(self) -> None:
        """Stop taking replies; responders still working on the request are told to stop."""
        self._finish(True)

    async def __anext__(self) -> Message:
        if self._replies is None and not self._done:
            await self._start()
        replies = self._replies
        while not self._done and replies is not None:
            if replies.queue:
                reply = replies.queue.pop(0)
                if H_NO_RESPONDERS in reply.headers:  # the broker says nobody subscribes
                    self._end()
                    break
                if H_ERROR in reply.headers:
                    try:
                        raise_for_error_reply(self.topic, reply)
                    except RemoteHandlerError as failure:
                        self.failures.append(failure)
                    continue
                self._handed += 1
                if self._max is not None and self._handed >= self._max:
                    self._end()
                return reply
            if replies.closed:
                self._end()
                raise NotConnectedError(f"the bus closed while a gather on {self.topic!r} ran")
            replies.wake = anyio.Event()
            with anyio.move_on_after(max(0.0, self._deadline - time.monotonic())) as scope:
                await replies.wake.wait()
            if scope.cancelled_caught:
                self._end()
        raise StopAsyncIteration
