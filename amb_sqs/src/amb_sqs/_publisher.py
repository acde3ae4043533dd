"""Publishing to the namespace's SNS topic, in batches.

Concurrent publishes are queued and sent in ``PublishBatch`` calls of up to 10 messages and 256 KiB
in all (SNS refuses a whole batch over that), a few batches in flight at once (one in FIFO mode, so
that a later batch cannot overtake an earlier one: SNS keeps order only within a batch). Every
message is encoded and size-checked before it is queued, so ``MessageTooLargeError`` is raised with
nothing sent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from amb_core.errors import AMBError
from amb_core.message import Message
from amb_core.wire import H_KEY

from ._subscription import BATCH
from .codec import MAX_SIZE, to_sns
from .errors import SQSPublishError, error_code, translate

if TYPE_CHECKING:
    from ._namespace import Namespace

__all__ = ["Publisher"]

_FLIGHTS = 4  # batches in flight at once (standard mode)

_Pending = tuple[dict[str, Any], int, asyncio.Future[None]]
"""A publish waiting for a batch: its ``PublishBatch`` entry, its size as SNS counts it, and the
future its caller awaits."""


def _take_batch(pending: deque[_Pending]) -> list[_Pending]:
    """The next ``PublishBatch`` off ``pending``: up to 10 entries whose sizes add up to at most
    :data:`MAX_SIZE`, since SNS refuses a whole batch over 256 KiB in all (``BatchRequestTooLong``),
    not only a single message over it. Every entry alone fits (:func:`to_sns` checked)."""
    batch = [pending.popleft()]
    total = batch[0][1]
    while pending and len(batch) < BATCH and total + pending[0][1] <= MAX_SIZE:
        total += pending[0][1]
        batch.append(pending.popleft())
    return batch


class Publisher:
    """Batches publishes to ``namespace``'s topic (its ``sns`` client and ``topic_arn``)."""

    def __init__(self, namespace: Namespace) -> None:
        self._ns = namespace
        self._fifo = namespace.config.fifo
        self._pending: deque[_Pending] = deque()
        self._flights = 0
        self._max_flights = 1 if self._fifo else _FLIGHTS
        self._tasks: set[asyncio.Task[None]] = set()

    def _entry(self, message: Message) -> tuple[dict[str, Any], int]:
        """The ``PublishBatch`` entry for ``message`` and its size as SNS counts it.

        :raises MessageTooLargeError: over :data:`MAX_SIZE`, before anything is sent.
        """
        text, attributes, size = to_sns(message)
        entry: dict[str, Any] = {"Message": text, "MessageAttributes": attributes}
        if self._fifo:
            key = message.key or message.headers.get(H_KEY) or message.topic
            entry["MessageGroupId"] = key[:128]
            entry["MessageDeduplicationId"] = message.id[:128]
        return entry, size

    async def publish(self, message: Message) -> None:
        entry, size = self._entry(message)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, size, future))
        if self._flights < self._max_flights:
            self._spawn_flush()
        await future

    async def publish_many(self, messages: Iterable[Message]) -> None:
        """Queue every message for batching, then await them all. Every message is encoded (and
        checked against :data:`MAX_SIZE`) before any is queued, so one that is too large raises
        with nothing sent, rather than leaving the ones before it queued for some later flush."""
        entries = [self._entry(message) for message in messages]
        loop = asyncio.get_running_loop()
        futures = []
        for entry, size in entries:
            future: asyncio.Future[None] = loop.create_future()
            self._pending.append((entry, size, future))
            futures.append(future)
        while self._flights < self._max_flights and self._flights * BATCH < len(self._pending):
            self._spawn_flush()
        await asyncio.gather(*futures)

    def fail_pending(self, make_error: Callable[[], AMBError]) -> None:
        """Fail every publish still waiting for a batch (the transport is closing)."""
        while self._pending:
            _, _, future = self._pending.popleft()
            if not future.done():
                future.set_exception(make_error())

    def _spawn_flush(self) -> None:
        self._flights += 1
        task = asyncio.ensure_future(self._flush_publishes())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_publishes(self) -> None:
        """Send pending publishes in batches until none is left."""
        ns = self._ns
        try:
            pending = self._pending
            while pending and ns.sns is not None:
                batch = _take_batch(pending)
                entries = [{**entry, "Id": str(i)} for i, (entry, _, _) in enumerate(batch)]
                try:
                    try:
                        response = await ns.sns.publish_batch(
                            TopicArn=ns.topic_arn, PublishBatchRequestEntries=entries
                        )
                    except Exception as exc:
                        if error_code(exc) != "NotFound":
                            raise
                        # The topic is gone (deleted, or an emulator restarted): declare again.
                        await ns.declare()
                        response = await ns.sns.publish_batch(
                            TopicArn=ns.topic_arn, PublishBatchRequestEntries=entries
                        )
                except Exception as exc:
                    error = translate(exc, "publish", ns.description, publishing=True)
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                failed = {f["Id"]: f for f in response.get("Failed") or []}
                for i, (_, _, future) in enumerate(batch):
                    if future.done():
                        continue
                    failure = failed.get(str(i))
                    if failure is None:
                        future.set_result(None)
                    else:
                        future.set_exception(
                            SQSPublishError(
                                f"SNS refused a message on {ns.description}: "
                                f"{failure.get('Code')}: {failure.get('Message')}"
                            )
                        )
        finally:
            self._flights -= 1
