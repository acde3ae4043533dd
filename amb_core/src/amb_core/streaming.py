"""The requester's side of a streamed reply: ``bus.stream()``.

An agent backed by a language model answers in tokens; ``bus.stream(topic, payload)`` yields each
chunk of the answer as a :class:`~amb_core.message.Message` as soon as it arrives, in order::

    async with bus.stream("agents.writer", {"prompt": "..."}, timeout=60, idle_timeout=10) as answer:
        async for chunk in answer:
            print(chunk.payload, end="")

The request goes out through the bus's reply inbox with ``amb-stream: <window>``; the responder's
frames come back numbered (``amb-seq``), and are handed out in that order: a frame that arrives
early waits for the ones before it, a duplicate is dropped (SQS standard queues may reorder and
duplicate), and a missing frame is waited for up to ``gap_timeout`` (then :class:`StreamGapError`).
As the application takes chunks, credit goes back to the responder every half window, so the
responder never runs more than ``window`` chunks ahead of the reader. See
:mod:`amb_core.stream_responder` for the other side and docs/wire-format.md for the frames.

Ending early (``break``, a cancel scope, a timeout, leaving the ``async with``) tells the responder,
whose generator is closed at its next ``yield``. Used as a context manager that happens at the
``async with``'s end; used as a bare ``async for``, when the stream object is dropped (at once on
CPython, which frees it as the loop ends). ``timeout`` bounds the whole stream and travels as the
request's deadline; ``idle_timeout`` bounds each wait for a chunk.

A responder that is not a generator answers a stream request with one plain reply: it is yielded
as the stream's only chunk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from .cancellation import H_SEQ
from .conversation import InboxConversation
from .errors import (
    NoRespondersError,
    NotConnectedError,
    RequestTimeoutError,
    StreamGapError,
    StreamIdleError,
)
from .inbox import H_ERROR, H_NO_RESPONDERS, raise_for_error_reply
from .message import Message
from .stream_responder import H_STREAM, H_STREAM_END, MAX_WINDOW

if TYPE_CHECKING:
    from .bus import MessageBus

__all__ = ["ReplyStream"]

log = logging.getLogger("amb.stream")
_RESEND_CREDIT = 1.0
"""Seconds a reader waits with chunks taken but not yet credited before it credits them anyway:
a responder waiting for credit that was lost (an at-most-once broker) goes on within a second."""


class _Frames:
    """What has arrived for one stream, filed by frame number (the inbox's receiver)."""

    __slots__ = (
        "closed",
        "final",
        "frames",
        "new_event",
        "next",
        "responder",
        "waiting",
        "wake",
        "window",
    )

    def __init__(self, window: int) -> None:
        self.frames: dict[int, Message] = {}
        self.final: Message | None = None  # a reply without a frame number: plain or an error
        self.next = 1
        self.window = window
        self.responder: str | None = None
        self.closed = False
        self.wake = anyio.Event()
        # The event loop's own Event class: anyio.Event() looks the loop up on every call (a
        # tenth of a chunk's cost), and the reader makes an Event for each wait.
        self.new_event: Callable[[], anyio.Event] = type(self.wake)
        self.waiting = False  # the reader is parked on wake (a frame sets it only then)

    def deliver(self, reply: Message) -> None:
        if self.responder is None and reply.reply_to:
            self.responder = reply.reply_to
        seq_text = reply.headers.get(H_SEQ)
        if seq_text is None:
            if self.final is None:
                self.final = reply
        else:
            try:
                seq = int(seq_text)
            except ValueError:
                log.debug("stream frame with a bad number %r dropped", seq_text)
                return
            if self.next <= seq <= self.next + self.window:  # else a duplicate, or beyond credit
                self.frames.setdefault(seq, reply)
        if self.waiting:
            self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class ReplyStream(InboxConversation):
    """A streamed reply: an async iterator of chunks, and an async context manager that ends it.

    Made by :meth:`MessageBus.stream`; the request is sent when the stream is entered or first
    iterated.
    """

    def __init__(
        self,
        bus: MessageBus,
        topic: str,
        payload: Any,
        *,
        timeout: float,
        idle_timeout: float | None,
        gap_timeout: float,
        window: int,
        headers: Mapping[str, str] | None,
        key: str | None,
    ) -> None:
        super().__init__(bus, topic, payload, timeout=timeout, headers=headers, key=key)
        self._idle = idle_timeout
        self._gap = gap_timeout
        self._window = max(1, min(window, MAX_WINDOW))
        self._half = max(1, self._window // 2)  # chunks taken between two credits
        self._frames: _Frames | None = None
        self._acked = 0
        self._last_chunk_is_final = False

    async def __aenter__(self) -> ReplyStream:
        if self._frames is None:
            await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> ReplyStream:
        return self

    async def aclose(self) -> None:
        """End the stream; an unfinished one tells its responder to stop."""
        self._end(cancel=True)

    def __del__(self) -> None:
        if self._frames is not None and not self._done:
            try:
                self._end(cancel=True)
            except Exception as exc:  # best effort at collection; aclose() is the way
                log.debug("could not end %r when it was dropped: %r", self, exc)

    async def _start(self) -> None:
        timeout = self._budget()
        if timeout <= 0:
            raise RequestTimeoutError(self.topic, self._timeout)
        self._frames = _Frames(self._window)
        await self._send(self._frames, timeout, {H_STREAM: str(self._window)})

    def _end(self, *, cancel: bool) -> None:
        frames = self._frames
        responder = frames.responder if frames is not None else None
        self._finish((responder or True) if cancel else False)

    async def __anext__(self) -> Message:
        if self._frames is None:
            await self._start()
        if self._done:
            raise StopAsyncIteration
        if self._last_chunk_is_final:
            self._end(cancel=False)
            raise StopAsyncIteration
        frames = self._frames
        assert frames is not None
        gap_since: float | None = None
        while True:
            frame = frames.frames.pop(frames.next, None)
            if frame is not None:
                frames.next += 1
                if H_STREAM_END in frame.headers:
                    self._end(cancel=False)
                    raise_for_error_reply(self.topic, frame)
                    raise StopAsyncIteration
                if frames.next - 1 - self._acked >= self._half:  # else no credit is due yet
                    self._credit(frames.next - 1)
                return frame
            if frames.final is not None and not frames.frames:
                reply = frames.final
                if H_NO_RESPONDERS in reply.headers:
                    self._end(cancel=False)
                    raise NoRespondersError(self.topic)
                if H_ERROR in reply.headers:
                    self._end(cancel=False)
                    raise_for_error_reply(self.topic, reply)
                self._last_chunk_is_final = True  # a plain responder's single answer
                return reply
            if frames.closed:
                self._end(cancel=False)
                raise NotConnectedError(f"the bus closed while a stream on {self.topic!r} ran")
            now = time.monotonic()
            wait = self._deadline - now
            cause = "deadline"
            if self._idle is not None and self._idle < wait:
                wait, cause = self._idle, "idle"
            if frames.frames:
                gap_since = now if gap_since is None else gap_since
                if gap_since + self._gap - now < wait:
                    wait, cause = gap_since + self._gap - now, "gap"
            if wait > _RESEND_CREDIT and self._acked < frames.next - 1:
                wait, cause = _RESEND_CREDIT, "credit"
            frames.wake = frames.new_event()
            frames.waiting = True
            with anyio.move_on_after(max(wait, 0.0)) as scope:
                try:
                    await frames.wake.wait()
                except BaseException:  # cancelled from outside: the responder must stop
                    self._end(cancel=True)
                    raise
                finally:
                    frames.waiting = False
            if scope.cancelled_caught:
                if cause == "credit":  # quiet for a while: our last credit may have been lost
                    self._credit(frames.next - 1, force=True)
                    continue
                self._end(cancel=True)
                if cause == "idle":
                    raise StreamIdleError(self.topic, self._idle or 0.0)
                if cause == "gap":
                    raise StreamGapError(self.topic, frames.next, self._gap)
                raise RequestTimeoutError(self.topic, self._timeout)

    def _credit(self, taken: int, *, force: bool = False) -> None:
        """The application took chunk ``taken``: every half window (or when ``force``d, after a
        quiet second with credit unsent), tell the responder."""
        frames = self._frames
        assert frames is not None
        due = force or taken - self._acked >= max(1, self._window // 2)
        if due and taken > 0 and frames.responder is not None:
            self._acked = taken
            self._bus._cancellations().control_later(
                self.correlation_id, "ack", frames.responder, taken
            )
