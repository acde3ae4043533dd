"""A Kafka subscription: one consumer, one poll thread, per-partition order, contiguous commits.

Why it is shaped this way:

- **A poll thread per subscription.** ``Consumer.consume`` blocks in C, and group membership and
  rebalance callbacks only progress while somebody polls; a thread of our own does that, hands whole
  batches to the loop through a deque (no hop per message), and wakes the loop only when it is parked.
- **Records leave each partition in order; commits are contiguous.** Partitions take turns, and
  within one the records are handed out in offset order, so with the bus's default ``concurrency=1``
  handlers see each partition (each key) in order, while several partitions interleave. An ack marks
  its offset settled, and only the settled prefix is committed (up to the first unsettled offset), by
  the poll thread every ``commit_interval`` and synchronously on revoke and close: a crash
  redelivers what was not handled, never loses it. With ``concurrency > 1`` handlers of one
  partition may overlap; order of *completion* is then not guaranteed.
- **Retries stay in the consumer.** ``nack(delay)`` schedules the same record again after the bus's
  backoff, without blocking the records behind it; the commit cannot pass it until the bus handles
  it or dead-letters it after ``max_attempts`` (which acks). No record blocks a partition forever.
- **Rebalances drop what was not handed out.** On revoke, buffered records of the revoked partitions
  are dropped (they will be fetched again by whoever owns them next), the thread waits a bounded time
  for deliveries in flight to be settled, then commits synchronously: no loss, and no duplicate
  unless a handler outlives the wait.
- **"new" without losing the first messages.** Partitions that exist at subscribe time and that the
  group has no committed offset for get their end offset committed before joining; everything else
  (topics a wildcard discovers later) starts at the earliest offset, which for such a topic means
  "everything published since the subscription began".
"""

from __future__ import annotations

import heapq
import itertools
import logging
import re
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from amb_core.transport import Delivery, Subscription, SubscriptionSpec, decode_delivery

from ._bridge import call_soon
from .errors import KafkaTransportError

if TYPE_CHECKING:
    from .transport import KafkaTransport

__all__ = ["KafkaSubscription", "pattern_regex"]

log = logging.getLogger("amb.kafka")
_seq = itertools.count()
_Key = tuple[str, int]
Message = Any  # confluent_kafka.Message; its stubs type every accessor as optional


def pattern_regex(pattern: str) -> str | None:
    """The Kafka regex subscription for an AMB pattern, or None when it has no wildcard.

    ``*`` is one token (``[^.]+``) and ``>`` one or more (``.+``); the bus re-checks every topic
    against AMB's grammar anyway.
    """
    tokens = pattern.split(".")
    if "*" not in tokens and ">" not in tokens:
        return None
    parts = ["[^.]+" if t == "*" else ".+" if t == ">" else re.escape(t) for t in tokens]
    return "^" + r"\.".join(parts) + "$"


class _Partition:
    """Loop-side state of one assigned partition."""

    __slots__ = ("done", "gone", "key", "out", "queued", "records")

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.records: deque[Message] = deque()  # fetched, not handed out yet
        self.out: deque[int] = deque()  # offsets handed out and not yet committable, in order
        self.done: set[int] = set()  # settled offsets still behind an unsettled one
        self.queued = False  # in the ready deque
        self.gone = False  # revoked: acks no longer commit

    @property
    def busy(self) -> bool:
        return bool(self.out)


class _KafkaDelivery(Delivery):
    __slots__ = ("_part", "_record", "_settled", "_sub")

    def __init__(
        self, sub: KafkaSubscription, part: _Partition, record: Message, attempt: int
    ) -> None:
        headers = record.headers()
        decoded = (
            {k: v.decode("utf-8", "replace") if v is not None else "" for k, v in headers}
            if headers
            else None
        )
        message, error = decode_delivery(record.value() or b"", decoded, record.topic(), attempt)
        self.message = message
        self.attempt = attempt
        self.error = error
        self._sub = sub
        self._part = part
        self._record = record
        self._settled = False

    async def ack(self) -> None:
        if not self._settled:
            self._settled = True
            self._sub._acked(self._part, self._record)

    async def nack(self, delay: float | None = None) -> None:
        if not self._settled:
            self._settled = True
            self._sub._retry(self._part, self._record, self.attempt + 1, delay or 0.0)


class KafkaSubscription(Subscription):
    """See the module docstring. Made by :meth:`KafkaTransport.subscribe`."""

    def __init__(self, transport: KafkaTransport, spec: SubscriptionSpec) -> None:
        self._transport = transport
        self._spec = spec
        self._config = transport.config
        self._fanout = spec.group is None
        self.group = spec.group or f"amb-fanout-{uuid.uuid4().hex}"
        self._regex = pattern_regex(spec.pattern)
        self._token = transport._token
        assert transport._loop is not None
        self._loop = transport._loop
        self._incoming: deque[Message] = deque()  # poll thread -> loop, whole batches
        self._parts: dict[_Key, _Partition] = {}
        self._ready: deque[_Partition] = deque()
        self._retries: list[tuple[float, int, _Partition, Message, int]] = []
        self._commits: dict[_Key, int] = {}  # loop -> thread, under _lock
        self._lock = threading.Lock()
        self._held = 0
        self._high = max(1000, spec.prefetch * 10)  # records held before the thread stops taking
        self._low = self._high // 2  # ... and takes again
        self._full = False  # the poll thread waits for room: the loop sets _room when there is
        self._room = threading.Event()
        # librdkafka wants a poll at least every max.poll.interval.ms, rebalances too: bound the wait
        interval = int(self._config.extra.get("max.poll.interval.ms", 300_000))
        self._hold = min(0.5, interval / 4000)
        self._parked = False
        self._wakeup: anyio.Event | None = None
        self._closed = False
        self._stopping = False
        self._error: Exception | None = None
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._joined = threading.Event()

    # -- setup (in a worker thread) --------------------------------------------------------------

    async def start(self) -> None:
        """Create the consumer, fix the start position, subscribe, start polling.

        :raises KafkaTransportError: when the broker refuses.
        """
        try:
            await anyio.to_thread.run_sync(self._start_blocking)
        except KafkaException as exc:
            raise KafkaTransportError(
                f"subscribing to {self._spec.pattern!r} failed: {exc.args[0]}"
            ) from None
        self._thread = threading.Thread(
            target=self._poll_loop, name=f"amb-kafka-{self._spec.pattern}", daemon=True
        )
        self._thread.start()

    def _start_blocking(self) -> None:
        consumer = Consumer(self._config.consumer(self.group))
        try:
            if self._spec.start == "new":
                self._commit_ends(consumer)
            consumer.subscribe(
                [self._regex or self._spec.pattern],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        except BaseException:
            consumer.close()
            raise
        self._consumer = consumer

    def _commit_ends(self, consumer: Any) -> None:
        """Commit the end offset of every existing partition this group has no position in."""
        timeout = self._config.connect_timeout
        metadata = consumer.list_topics(timeout=timeout)
        match = re.compile(self._regex).match if self._regex else self._spec.pattern.__eq__
        ends = []
        for name, topic in metadata.topics.items():
            if topic.error is None and match(name):
                for p in topic.partitions:
                    _, high = consumer.get_watermark_offsets(
                        TopicPartition(name, p), timeout=timeout
                    )
                    ends.append(TopicPartition(name, p, high))
        if ends and not self._fanout:
            known = consumer.committed(ends, timeout=timeout)
            fresh = {(tp.topic, tp.partition) for tp in known if tp.offset < 0}
            ends = [tp for tp in ends if (tp.topic, tp.partition) in fresh]
        if ends:
            try:
                consumer.commit(offsets=ends, asynchronous=False)
            except KafkaException as exc:  # a live group owns these partitions: keep its position
                log.debug("start offsets for group %s not set: %s", self.group, exc)

    # -- the poll thread -------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        interval = self._config.commit_interval
        next_commit = time.monotonic() + interval
        try:
            while not self._stopping:
                if len(self._incoming) + self._held > self._high:
                    # Enough is waiting on the loop: stop taking records until it makes room.
                    # librdkafka keeps prefetching into its own bounded queue meanwhile. Pausing
                    # the partitions instead made librdkafka drop everything it had prefetched and
                    # fetch it again after resume (about a second each time on Tansu).
                    self._room.clear()
                    self._full = True
                    if len(self._incoming) + self._held > self._low:
                        self._room.wait(self._hold)
                    self._full = False
                # poll() returns as soon as one record is there; consume(n, timeout) would wait
                # for n records or the whole timeout. Then take whatever else is ready, at once.
                first = consumer.poll(0.1)
                records = [first, *consumer.consume(499, 0)] if first is not None else None
                if records:
                    good = [r for r in records if r.error() is None]
                    for r in records:
                        error = r.error()
                        if error is not None and error.code() != KafkaError._PARTITION_EOF:
                            log.warning("consumer %s: %s", self.group, error)
                    if good:
                        self._incoming.extend(good)
                        if self._parked:
                            self._loop.soon(self._wake)
                if time.monotonic() >= next_commit:
                    self._commit(consumer, asynchronous=True)
                    next_commit = time.monotonic() + interval
        except Exception as exc:  # a fatal consumer error: surface it on __anext__
            log.error("consumer %s failed: %r", self.group, exc)
            self._error = KafkaTransportError(f"consumer of {self._spec.pattern!r} failed: {exc}")
            if self._parked:
                self._loop.soon(self._wake)
        finally:
            self._settle_join(consumer)
            self._commit(consumer, asynchronous=False)
            try:
                consumer.close()  # leaves the group: partitions move to the other members at once
            except Exception as exc:
                log.debug("closing consumer %s: %r", self.group, exc)

    def _settle_join(self, consumer: Any) -> None:
        """Before leaving, let a join in progress finish (bounded by the session timeout).

        A member that leaves in the middle of a join can stay behind as the group's leader on some
        brokers (Tansu 0.6), and the group then never completes another rebalance.
        """
        deadline = time.monotonic() + min(self._config.session_timeout_ms / 1000, 10.0)
        while not self._joined.is_set() and time.monotonic() < deadline:
            for record in consumer.consume(500, 0.05) or ():
                if record.error() is None:
                    self._incoming.append(record)  # never handed out: fetched again later

    def _commit(self, consumer: Any, *, asynchronous: bool, keys: Any = None) -> None:
        with self._lock:
            if keys is None:
                pending, self._commits = self._commits, {}
            else:
                pending = {k: self._commits.pop(k) for k in keys if k in self._commits}
        if not pending:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=asynchronous)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit for group %s failed: %s", self.group, exc.args[0])

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._joined.set()
        log.debug("group %s assigned %s", self.group, partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        if not self._stopping:
            busy: list[_Partition] = []
            if not call_soon(self._token, self._drop, keys, busy):
                busy = []
            deadline = time.monotonic() + min(self._spec.ack_wait, 30.0)
            while any(p.busy for p in busy) and time.monotonic() < deadline:
                time.sleep(0.005)
            for part in busy:
                part.gone = True
        self._commit(consumer, asynchronous=False, keys=keys)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        if not self._stopping:
            call_soon(self._token, self._drop, keys, [])
        with self._lock:
            for key in keys:
                self._commits.pop(key, None)

    # -- loop side -------------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _drop(self, keys: list[_Key], busy: list[_Partition]) -> None:
        """On the loop: forget revoked partitions' buffered records; report those in flight."""
        self._distribute()
        for key in keys:
            part = self._parts.pop(key, None)
            if part is None:
                continue
            self._held -= len(part.records)
            part.records.clear()
            if any(r[2] is part for r in self._retries):
                # A retry waits: the commit cannot pass it, so it is fetched again by the next
                # owner; nothing to wait for.
                self._retries = [r for r in self._retries if r[2] is not part]
                heapq.heapify(self._retries)
                part.gone = True
            elif part.busy:
                busy.append(part)
            else:
                part.gone = True
        if keys:
            self._ready = deque(p for p in self._ready if not p.gone and p.key in self._parts)

    def _distribute(self) -> None:
        incoming = self._incoming
        parts = self._parts
        ready = self._ready
        while incoming:
            record = incoming.popleft()
            key = (record.topic(), record.partition())
            part = parts.get(key)
            if part is None:
                part = parts[key] = _Partition(key)
            part.records.append(record)
            self._held += 1
            if not part.queued:
                part.queued = True
                ready.append(part)

    def _acked(self, part: _Partition, record: Message) -> None:
        """Settle an offset; commit the contiguous settled prefix (never past an unsettled one)."""
        offset = record.offset()
        out = part.out
        if not out or out[0] != offset:
            part.done.add(offset)  # behind an earlier unsettled one: committed later
            return
        last = out.popleft()
        done = part.done
        while out and out[0] in done:
            last = out.popleft()
            done.discard(last)
        if part.gone:
            return
        with self._lock:
            self._commits[part.key] = out[0] if out else last + 1

    def _retry(self, part: _Partition, record: Message, attempt: int, delay: float) -> None:
        if part.gone:
            return
        heapq.heappush(self._retries, (time.monotonic() + delay, next(_seq), part, record, attempt))
        self._wake()

    def _take(self) -> Delivery | None:
        if self._incoming:
            self._distribute()
        retries = self._retries
        if retries and retries[0][0] <= time.monotonic():
            _, _, part, record, attempt = heapq.heappop(retries)
            if not part.gone:
                return _KafkaDelivery(self, part, record, attempt)
        ready = self._ready
        while ready:
            part = ready[0]
            if part.gone or not part.records:
                ready.popleft()
                part.queued = False
                continue
            record = part.records.popleft()
            if not part.records:
                ready.popleft()
                part.queued = False
            elif len(ready) > 1:
                ready.rotate(-1)  # partitions take turns
            part.out.append(record.offset())
            self._held -= 1
            if self._full and self._held + len(self._incoming) < self._low:
                self._room.set()
            return _KafkaDelivery(self, part, record, 1)
        return None

    async def __anext__(self) -> Delivery:
        while True:
            if self._closed:
                raise StopAsyncIteration
            delivery = self._take()
            if delivery is not None:
                return delivery
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            await self._park()

    async def _park(self) -> None:
        self._wakeup = event = anyio.Event()
        self._parked = True
        if self._full:
            self._room.set()
        try:
            if self._incoming or self._closed:
                return
            timeout = 1.0
            if self._retries:
                timeout = max(0.0, min(timeout, self._retries[0][0] - time.monotonic()))
            with anyio.move_on_after(timeout):
                await event.wait()
        finally:
            self._parked = False
            self._wakeup = None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake()
        self._stopping = True
        self._room.set()
        thread = self._thread
        if thread is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(thread.join)
        self._transport._forget(self)
        if self._fanout:
            self._transport._delete_group(self.group)
