"""An SQS subscription: one queue read by long-poll receive loops, and its deliveries.

Each subscription runs ``pollers`` receive loops (one in FIFO mode) of up to 10 messages into a local
deque, bounded by the prefetch. ``ack`` deletes the message, batched (deletes issued together go in
one ``DeleteMessageBatch``); ``nack(delay)`` sets its visibility timeout to ``delay``, so SQS
redelivers it then; ``ApproximateReceiveCount`` is the attempt number. Closing a group member hands
back what it held; closing a fan-out subscriber deletes its queue.

Every message a member holds (prefetched, in a handler, or handled and waiting for its delete) must
stay invisible until it is deleted or handed back: a handled message whose visibility ran out first
is received again, and counts towards the queue's ``maxReceiveCount`` (a message handled fine could
be dead-lettered by SQS's redrive). So each held receipt handle has a deadline (when the request
that set its visibility was *sent*, plus the visibility: the server's own deadline is never
earlier), and the heartbeat extends every handle whose deadline is less than a tick plus half a
visibility away, all batches at once. Under a slow endpoint (moto under load answers in seconds)
a heartbeat that walked the handles one batch after another every ``ack_wait / 2``, and skipped
the handled ones waiting for their delete, let messages reappear (receive counts up to 6 in the
soak).

How early is early enough depends on the endpoint: an extension must reach it before the deadline,
and the next beat comes a tick later. So the margin is counted from the next beat, not from this one,
and grows with the slowest recent round trip (``latency``); an extension in flight does not hold up
the beats after it. With one awaited per beat, the handles received meanwhile waited out a slow
request plus a tick (twice in 50 messages in CI, with every request 0.5 s late and the machine
loaded). Counted from this beat, the margin let an extension leave as little as a quarter timeout
before its deadline while no round trip had been measured yet (0.75 s of a 3 s timeout, barely
more than that test's delay).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from amb_core.aio import cancel_and_wait
from amb_core.backoff import Backoff
from amb_core.message import Message
from amb_core.transport import Delivery, Subscription, SubscriptionSpec

from .codec import from_sqs
from .errors import NOT_FOUND, error_code, translate
from .naming import fallback_topic

if TYPE_CHECKING:
    from ._namespace import Namespace

__all__ = ["SQSDelivery", "SQSSubscription"]

log = logging.getLogger("amb.sqs")
BATCH = 10  # SQS takes at most 10 entries per batch call and returns at most 10 per receive
_SHORT_POLL_PAUSE = 0.05


class SQSDelivery(Delivery):
    __slots__ = ("_handle", "_sub")

    def __init__(
        self, sub: SQSSubscription, handle: str, message: Message, attempt: int, error: Any
    ) -> None:
        self.message = message
        self.attempt = attempt
        self.error = error
        self._sub = sub
        self._handle = handle

    async def ack(self) -> None:
        sub = self._sub
        if sub.outstanding.pop(self._handle, None) is not None:
            sub.queue_ack(self._handle)

    async def nack(self, delay: float | None = None) -> None:
        sub = self._sub
        if sub.outstanding.pop(self._handle, None) is None:
            return
        seconds = min(43_200, max(0, math.ceil(delay or 0)))
        sub.expiry.pop(self._handle, None)  # no longer held: the heartbeat leaves it alone
        await sub.change_visibility([self._handle], seconds)


class SQSSubscription(Subscription):
    """One SQS queue read by ``pollers`` long-poll loops into a local deque."""

    def __init__(
        self,
        namespace: Namespace,
        spec: SubscriptionSpec,
        queue_url: str,
        subscription_arn: str | None,
        owned: bool,
        only: Callable[[str], bool] | None = None,
        *,
        forget: Callable[[SQSSubscription], None],
    ) -> None:
        self.namespace = namespace
        self.forget = forget  # the transport's: this subscription is closing
        self.spec = spec
        self.queue_url = queue_url
        self.subscription_arn = subscription_arn
        self.owned = owned  # a fan-out queue: deleted on close
        self.only = only  # reading the dead-letter archive: deliver only these topics
        self.held: list[str] = []  # archive messages for other patterns, released at close
        self.topic = fallback_topic(spec.pattern)
        self.visibility = max(1, math.ceil(spec.ack_wait))
        self.buffer: deque[SQSDelivery] = deque()
        self.limit = max(BATCH, min(spec.prefetch, 10 * namespace.config.pollers))
        self.outstanding: dict[str, SQSDelivery] = {}
        # Every receipt handle this member holds until it is deleted or handed back, with the
        # loop time by which its visibility runs out at the earliest (see the module docstring).
        self.expiry: dict[str, float] = {}
        self.latency = 0.0  # the slowest recent visibility change or delete, decaying (seconds)
        self._extending: set[str] = set()  # handles whose extension is in flight
        self._extensions: set[asyncio.Task[None]] = set()
        self.closed = False
        self.error: BaseException | None = None
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._acks: list[str] = []
        self._ack_task: asyncio.Task[None] | None = None
        pollers = 1 if namespace.config.fifo else namespace.config.pollers
        self._pollers = [asyncio.ensure_future(self._poll()) for _ in range(pollers)]
        self._heartbeat = (
            asyncio.ensure_future(self._beat()) if namespace.config.heartbeat else None
        )

    # -- receiving -------------------------------------------------------------------------------

    async def _poll(self) -> None:
        namespace = self.namespace
        sqs = namespace.sqs
        backoff = Backoff(initial=0.1, cap=2.0)
        fifo = namespace.config.fifo
        while not self.closed:
            if len(self.buffer) >= self.limit:
                self._space.clear()
                await self._space.wait()
                continue
            if fifo and not self._settled():
                # A FIFO queue holds back a message group while any of its messages is in
                # flight: receiving now would only long-poll for nothing.
                await asyncio.sleep(0.002)
                continue
            sent = asyncio.get_running_loop().time()
            try:
                response = await sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=BATCH,
                    WaitTimeSeconds=namespace.config.wait,
                    VisibilityTimeout=self.visibility,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.closed:
                    return
                if error_code(exc) in NOT_FOUND:
                    self.error = translate(exc, "receive", namespace.description)
                    self._ready.set()
                    return
                delay = backoff.next()
                log.warning(
                    "receive from %s failed (%s); retrying in %.2fs",
                    namespace.description,
                    translate(exc, "receive", namespace.description),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            records = response.get("Messages")
            if not records:
                if not namespace.config.wait:  # short polling: do not spin on an empty queue
                    await asyncio.sleep(_SHORT_POLL_PAUSE)
                continue
            if self.closed:  # received while closing: give them straight back
                await self.change_visibility([r["ReceiptHandle"] for r in records], 0)
                return
            for record in records:
                attempt = int(record.get("Attributes", {}).get("ApproximateReceiveCount", 1))
                message, error = from_sqs(record, self.topic, attempt)
                handle = record["ReceiptHandle"]
                self.expiry[handle] = sent + self.visibility
                self.buffer.append(SQSDelivery(self, handle, message, attempt, error))
            self._ready.set()

    async def __anext__(self) -> Delivery:
        buffer = self.buffer
        while True:
            while not buffer:
                if self.closed:
                    raise StopAsyncIteration
                if self.error is not None:
                    raise self.error
                self._ready.clear()
                await self._ready.wait()
            delivery = buffer.popleft()
            if not self._space.is_set() and len(buffer) < self.limit:
                self._space.set()
            if self.only is not None and not self.only(delivery.message.topic):
                self.held.append(delivery._handle)
                continue
            self.outstanding[delivery._handle] = delivery
            return delivery

    async def _beat(self) -> None:
        """Keep what this member holds invisible while it lives: every quarter visibility timeout
        (at most every second), extend each held message whose visibility would otherwise run out
        less than half a timeout (or two slow round trips) after the next beat. So every extension
        leaves with at least that much time to spare, however a beat falls against a deadline. A
        handler slower than ``ack_wait`` (an LLM call) thus causes no duplicate, nor does a delete
        that waits behind a slow endpoint; a dead process stops extending, and its messages
        reappear one timeout later."""
        loop = asyncio.get_running_loop()
        tick = min(1.0, self.visibility / 4)
        extending = self._extending
        while not self.closed:
            await asyncio.sleep(tick)
            soon = loop.time() + tick + max(self.visibility / 2, 2 * self.latency)
            due = [h for h, ends in self.expiry.items() if ends < soon and h not in extending]
            if due and not self.closed:
                extending.update(due)
                task = asyncio.ensure_future(self._extend(due))
                self._extensions.add(task)
                task.add_done_callback(self._extensions.discard)

    async def _extend(self, handles: list[str]) -> None:
        try:
            await self.change_visibility(handles, self.visibility, quiet=True)
        finally:
            self._extending.difference_update(handles)

    def _took(self, seconds: float) -> None:
        """A visibility change or delete took ``seconds``: the heartbeat's margin follows the
        slowest recent one, and forgets it slowly."""
        self.latency = max(seconds, self.latency * 0.9)

    # -- settling --------------------------------------------------------------------------------

    def _settled(self) -> bool:
        task = self._ack_task
        return not (self.buffer or self.outstanding or self._acks or (task and not task.done()))

    def queue_ack(self, handle: str) -> None:
        self._acks.append(handle)
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.ensure_future(self._flush_acks())

    async def _flush_acks(self) -> None:
        """Delete the acknowledged messages: all waiting batches at once (one after another, a
        slow endpoint made the last ones wait for many round trips), then those acknowledged
        meanwhile. Until its delete returns, a handle stays in ``expiry`` for the heartbeat."""
        await asyncio.sleep(0)  # let acks issued in the same tick join the batch
        while self._acks:
            handles, self._acks[:] = self._acks[:], []
            await asyncio.gather(
                *(self._delete(handles[i : i + BATCH]) for i in range(0, len(handles), BATCH))
            )

    async def _delete(self, batch: list[str]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(batch)]
        try:
            sqs = self.namespace.sqs
            sent = asyncio.get_running_loop().time()
            response = await sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            self._took(asyncio.get_running_loop().time() - sent)
            failed = response.get("Failed") or []
        except Exception as exc:
            failed = entries
            log.warning("deleting acknowledged messages failed: %s", exc)
        finally:
            for handle in batch:  # deleted, or given up: it comes back anyway
                self.expiry.pop(handle, None)
        if failed:
            log.warning(
                "%d acknowledged messages were not deleted on %s; they will be redelivered",
                len(failed),
                self.namespace.description,
            )

    async def change_visibility(
        self, handles: list[str], seconds: int, *, quiet: bool = False
    ) -> None:
        """Set the visibility timeout of ``handles``, all batches at once. A handle extended
        (``seconds`` > 0) gets its new deadline in ``expiry`` if it is still held; one handed back
        (0) or nacked leaves ``expiry``."""
        await asyncio.gather(
            *(
                self._change_batch(handles[i : i + BATCH], seconds, quiet)
                for i in range(0, len(handles), BATCH)
            )
        )

    async def _change_batch(self, batch: list[str], seconds: int, quiet: bool) -> None:
        expiry = self.expiry
        if not seconds:
            for handle in batch:
                expiry.pop(handle, None)
        entries = [
            {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": seconds}
            for i, h in enumerate(batch)
        ]
        sent = asyncio.get_running_loop().time()
        try:
            sqs = self.namespace.sqs
            response = await sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url, Entries=entries
            )
            self._took(asyncio.get_running_loop().time() - sent)
        except Exception as exc:  # it comes back after its visibility timeout anyway
            (log.debug if quiet else log.warning)(
                "changing visibility on %s failed: %s", self.namespace.description, exc
            )
            return
        failed = {int(entry["Id"]) for entry in response.get("Failed") or []}
        if seconds:
            for i, handle in enumerate(batch):
                if i not in failed and handle in expiry:
                    expiry[handle] = sent + seconds

    # -- closing ---------------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._ready.set()
        self._space.set()
        self.forget(self)
        if self._heartbeat is not None:
            await cancel_and_wait(
                self._heartbeat, f"the heartbeat of {self.spec.pattern!r}", log=log
            )
        if self._extensions:  # let them land: one cancelled mid-request may still be applied
            await asyncio.wait(self._extensions, timeout=self.namespace.config.connect_timeout)
            for task in list(self._extensions):
                await cancel_and_wait(task, f"an extension on {self.spec.pattern!r}", log=log)
        if self.owned:
            for task in self._pollers:
                task.cancel()
        # A group's queue lives on: let the current long polls finish so that no message they
        # return is stranded invisible, then hand back what this member held unsettled.
        done, pending = await asyncio.wait(
            self._pollers,
            timeout=self.namespace.config.wait + self.namespace.config.connect_timeout,
        )
        for task in pending:
            await cancel_and_wait(task, f"a receive loop of {self.spec.pattern!r}", log=log)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error(
                    "a receive loop of %r had failed: %r", self.spec.pattern, task.exception()
                )
        if self._ack_task is not None and not self._ack_task.done():
            # asyncio.wait, not ``await task``: cancelling this close must not cancel the deletes
            # of messages already handled (they would come back as duplicates), and the flush
            # never raises (it logs what it could not delete).
            await asyncio.wait([self._ack_task])
        if self._acks:
            await self._flush_acks()
        if self.owned:
            await self.namespace.drop_queue(self.queue_url, self.subscription_arn)
            return
        left = [d._handle for d in self.buffer] + list(self.outstanding) + self.held
        self.held = []
        self.buffer.clear()
        self.outstanding.clear()
        self.expiry.clear()
        if left:
            await self.change_visibility(left, 0)
