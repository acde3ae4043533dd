"""The responder's side of a streamed reply: a handler that is an async generator.

A subscribed handler written as ``async def handler(message): yield ...`` answers in chunks. What
the bus does with it depends on what reached it:

* a stream request (``amb-stream: <window>``, from ``bus.stream()``): each chunk is sent to the
  requester as it is produced, as a *frame*: a reply with ``amb-seq: 1, 2, ...``, the first with
  ``reply_to`` this bus's inbox (where the requester's credit and cancel go); then an end frame with
  ``amb-stream-end: <chunks sent>``, or, when the generator raises after a chunk went out, an end
  frame that also carries ``amb-error``/``amb-error-reason``. See docs/wire-format.md.
* a plain request (``bus.request()``): the chunks are gathered and sent as one reply, a JSON list.
* a plain publish: the generator is run to its end and its chunks are dropped.

Flow control is a window of credit: at most ``window`` chunks beyond the last one the requester
acknowledged (it acknowledges as the application takes chunks, every half window). The generator is
not asked for the next chunk until there is credit, so a slow reader makes the producer wait rather
than the bus buffer. A cancel (see :mod:`.cancellation`) stops the generator at once: waiting at a
``yield`` (for credit, or between chunks) it is closed there (it gets ``GeneratorExit``); busy
producing a chunk, it is cancelled where it waits (an anyio cancellation), and that chunk is not
sent. Either way its ``finally`` blocks run and nothing goes on producing for nobody. The whole
stream is bounded by the request's deadline.

Failures: a generator that raises before its first chunk is retried and dead-lettered like any
handler (the requester gets the error reply); after its first chunk it is neither retried nor
dead-lettered (a half-sent stream cannot be taken back): the error frame tells the requester, the
failure is logged, and the request is acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from .cancellation import H_SEQ
from .inbox import H_ERROR, H_ERROR_REASON
from .message import Message, build_message, new_id
from .typed import PLAIN_TYPES, plain

if TYPE_CHECKING:
    from .bus import MessageBus

__all__ = [
    "DEFAULT_WINDOW",
    "H_STREAM",
    "H_STREAM_END",
    "MAX_WINDOW",
    "StreamInterrupted",
    "streaming_call",
]

log = logging.getLogger("amb.stream")
H_STREAM = "amb-stream"
"""On a request: the requester wants a streamed reply, with this many chunks of credit."""
H_STREAM_END = "amb-stream-end"
"""On a stream's last frame: how many chunks came before it."""
DEFAULT_WINDOW = 64
MAX_WINDOW = 1024


class StreamInterrupted(Exception):
    """A streaming handler failed after its first chunk: the error frame has been sent, and the
    request is settled without a retry (internal; never reaches application code)."""


class _Credit:
    """How far the responder may run ahead of what the requester has taken."""

    __slots__ = ("acked", "cancelled", "new_event", "producing", "wake", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.acked = 0
        self.cancelled = False
        self.wake = anyio.Event()
        self.new_event: Callable[[], anyio.Event] = type(self.wake)  # see streaming._Frames
        self.producing: anyio.CancelScope | None = None  # set while the generator makes a chunk

    def grant(self, seq: int) -> None:
        if seq > self.acked:
            self.acked = seq
            self.wake.set()

    def cancel(self) -> None:
        self.cancelled = True
        self.wake.set()
        if self.producing is not None:
            self.producing.cancel()

    async def wait_for(self, seq: int) -> None:
        """Wait until frame ``seq`` may be sent, or the stream is cancelled."""
        while seq > self.acked + self.window and not self.cancelled:
            self.wake = self.new_event()
            await self.wake.wait()


def _window(text: str) -> int:
    try:
        return max(1, min(int(text), MAX_WINDOW))
    except ValueError:
        return DEFAULT_WINDOW


def streaming_call(
    bus: MessageBus, handler: Callable[[Message], AsyncGenerator[Any, None]]
) -> Callable[[Message], Awaitable[Any]]:
    """The subscriber's call for an async generator ``handler`` (see the module)."""

    async def call(message: Message) -> Any:
        chunks = handler(message)
        try:
            if message.reply_to is None:
                async for _ in chunks:
                    pass
                return None
            window = message.headers.get(H_STREAM)
            if window is None:
                return [plain(chunk) async for chunk in chunks]
            await _serve(bus, message, chunks, _window(window))
            return None
        finally:
            await chunks.aclose()

    call.__name__ = getattr(handler, "__name__", "stream")
    return call


async def _serve(
    bus: MessageBus, request: Message, chunks: AsyncGenerator[Any, None], window: int
) -> None:
    """Send ``chunks`` as frames of the reply to ``request``, within its deadline."""
    assert request.reply_to is not None
    inbox = await bus._inbox_ready()  # the requester's credit and cancel come here
    key = request.correlation_id or request.id
    credit = _Credit(window)
    cancellations = bus._cancellations()
    cancellations.enter(key, credit.cancel)
    cancellations.acks[key] = credit.grant
    sent = 0
    send_now = bus._send_now
    reply_topic, sender = request.reply_to, bus.name or bus.id

    async def frame(payload: Any, headers: dict[str, str]) -> None:
        assert request.reply_to is not None
        reply = build_message(
            request.reply_to,
            payload,
            headers,
            new_id(),
            key,
            # The first frame names this inbox (where credit and cancels go); the others leave it
            # out, which keeps them on the requester's fast path (a reply_to sends a message to
            # the slow one). Frames are taken in order, so the first is always read first.
            inbox.topic if headers[H_SEQ] == "1" else None,
            time.time(),
            bus.name or bus.id,
            None,
            1,
            0,
            key,  # one key: a partitioned broker (Kafka) keeps the frames in order
        )
        if sent <= 1:
            await bus._publish_message(reply, one_off=True)  # checks the reply topic, once
        elif send_now is None or not send_now(reply):
            await bus._send(reply)

    remaining = request.remaining()
    try:
        with anyio.move_on_after(remaining if remaining is not None else float("inf")):
            try:
                # One scope for the whole loop (a scope per chunk costs a tenth of a chunk): a
                # cancel cuts short what the generator is producing, or the wait for credit.
                with anyio.CancelScope() as credit.producing:
                    while True:
                        if sent + 1 > credit.acked + credit.window or credit.cancelled:
                            await credit.wait_for(sent + 1)  # (a coroutine only when it waits)
                            if credit.cancelled:
                                return
                        try:
                            chunk = await chunks.__anext__()
                        except StopAsyncIteration:
                            break
                        sent += 1
                        if type(chunk) not in PLAIN_TYPES:
                            chunk = plain(chunk)
                        if sent > 1 and send_now is not None:
                            # frame()'s usual case spelled out: one coroutine less per chunk
                            reply = build_message(
                                reply_topic,
                                chunk,
                                {H_SEQ: str(sent)},
                                new_id(),
                                key,
                                None,
                                time.time(),
                                sender,
                                None,
                                1,
                                0,
                                key,
                            )
                            if not send_now(reply):
                                await bus._send(reply)
                        else:
                            await frame(chunk, {H_SEQ: str(sent)})
                if credit.cancelled:
                    return  # cancelled: the chunk being produced, if any, is not sent
            except Exception as exc:
                if not sent:
                    raise  # nothing went out: retried and dead-lettered like any handler
                log.error(
                    "streaming handler for %r failed after %d chunks: %r", request.topic, sent, exc
                )
                await frame(
                    None,
                    {
                        H_SEQ: str(sent + 1),
                        H_STREAM_END: str(sent),
                        H_ERROR: f"{type(exc).__name__}: {exc}"[:2000],
                        H_ERROR_REASON: "handler_error",
                    },
                )
                raise StreamInterrupted(str(exc)) from exc
            await frame(None, {H_SEQ: str(sent + 1), H_STREAM_END: str(sent)})
    finally:
        cancellations.leave(key, credit.cancel)
        cancellations.acks.pop(key, None)
