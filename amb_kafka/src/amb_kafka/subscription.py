"""A Kafka subscription: one consumer, taken from by the loop and a poll thread; per-partition order,
contiguous commits.

Why it is shaped this way:

- **The loop takes records itself; a thread waits for it.** ``Consumer.consume`` blocks in C, and
  group membership and rebalance callbacks only progress while somebody polls. While records flow,
  the loop takes a few hundred at a time without waiting (``consume(n, 0)``) once it has handed out
  the last ones, as a hand-written loop does: records are made and dropped on one thread, few are
  alive at once, and the garbage collector hardly runs (batches of thousands handed over from a
  thread survived its young collections and cost a full collection every few tens of thousands of
  records). A poll thread of our own does what would block: it waits for the next record when the
  loop has none (and wakes the loop only when it is parked), and polls on when handlers are too slow
  to come back within ``max.poll.interval``'s margin. A lock keeps the two from calling the consumer
  at once, and batches reach the loop in the order they were taken.
- **Slow handlers hold a bounded number of records.** Past the limit, the thread stops taking; still
  full after a hold, it pauses the partitions and polls on (the group needs it) until the handlers
  catch up.
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
  unless a handler outlives the wait. A revoke served on the loop (during its own take) cannot wait
  for deliveries in flight, but with ``concurrency=1`` there are none then (the loop takes only
  between two handlers); with more, those in flight may be handled again by the next owner. Its
  synchronous commit holds the loop for one round trip to the group coordinator.
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
from itertools import groupby
from typing import TYPE_CHECKING, Any

import anyio
import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from amb_core.errors import DecodeError
from amb_core.transport import Delivery, Subscription, SubscriptionSpec, undecodable
from amb_core.wire import decode_pairs

from ._bridge import call_soon
from .errors import KafkaTransportError

if TYPE_CHECKING:
    from .transport import KafkaTransport

__all__ = ["KafkaSubscription", "pattern_regex"]

log = logging.getLogger("amb.kafka")
_seq = itertools.count()
_Key = tuple[str, int]
_BATCH = 5000  # records per consume() call of the poll thread, at most
_TAKE = 500  # records per consume() call of the loop, at most (see KafkaSubscription._take)
# The record type's own methods, unbound: called by map() and groupby() from C per record, they cost
# a quarter of methodcaller("topic"), which looks the name up on every call. (Any: the stubs type
# every accessor as optional, and these only ever see records.)
_error: Any = confluent_kafka.Message.error
_topic: Any = confluent_kafka.Message.topic
_partition: Any = confluent_kafka.Message.partition
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

    __slots__ = ("commit", "done", "gone", "key", "out", "queued", "records", "sub")

    def __init__(self, sub: KafkaSubscription, key: _Key) -> None:
        self.sub = sub
        self.key = key
        self.records: deque[Message] = deque()  # fetched, not handed out yet
        self.out: deque[int] = deque()  # offsets handed out and not yet committable, in order
        self.done: set[int] = set()  # settled offsets still behind an unsettled one
        # The offset to commit next (everything before it settled), -1 for none yet. Only the loop
        # writes it, in one store; the poll thread reads it: no lock per ack.
        self.commit = -1
        self.queued = False  # in the ready deque
        self.gone = False  # revoked or lost: its commit position is no longer committed


class _KafkaDelivery(Delivery):
    """One record handed to the bus. Decoded here, on the loop, in a single call (no helper frames:
    this and :meth:`ack_now` run once per message). ``_part`` is None once settled."""

    __slots__ = ("_offset", "_part", "_record")

    def __init__(self, part: _Partition, record: Message, offset: int, attempt: int) -> None:
        body = record.value() or b""
        try:
            self.message = decode_pairs(body, record.headers(), record.topic(), attempt)
            self.error = None
        except DecodeError as exc:  # undecodable: the bus dead-letters it
            self.message, self.error = undecodable(body, record.topic(), attempt), exc
        self.attempt = attempt
        self._part: _Partition | None = part
        self._record = record
        self._offset = offset

    async def ack(self) -> None:
        self.ack_now()

    def ack_now(self) -> bool:
        """Settle the offset; advance the partition's commit position over the settled prefix
        (never past an unsettled offset). In order (the usual case) that is a popleft and a store.
        No I/O: the poll thread commits the position."""
        part = self._part
        if part is None:
            return True
        self._part = None
        out = part.out
        if out and out[0] == self._offset and not part.done:  # in order, nothing waits behind
            out.popleft()
            part.commit = out[0] if out else self._offset + 1
        else:
            _settle_out_of_order(part, self._offset)
        return True

    async def nack(self, delay: float | None = None) -> None:
        part = self._part
        if part is not None:
            self._part = None
            part.sub._retry(part, self._record, self.attempt + 1, delay or 0.0)


def _settle_out_of_order(part: _Partition, offset: int) -> None:
    """:meth:`_KafkaDelivery.ack_now` when ``offset`` is not the first unsettled one, or settled
    offsets wait behind it: remember it, and move the commit position over the settled prefix."""
    out, done = part.out, part.done
    if not out or out[0] != offset:
        done.add(offset)  # behind an earlier unsettled one: committed with it later
        return
    out.popleft()
    while out and out[0] in done:
        offset = out.popleft()
        done.discard(offset)
    part.commit = out[0] if out else offset + 1


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
        self._incoming: deque[list[Message]] = deque()  # poll thread -> loop, whole batches
        self._parts: dict[_Key, _Partition] = {}
        self._ready: deque[_Partition] = deque()
        self._retries: list[tuple[float, int, _Partition, Message, int]] = []
        self._committed: dict[_Key, int] = {}  # the positions committed; used under _lock only
        # Records taken from librdkafka and not yet handed out: _fetched - _released. Each counter
        # has one writer (the thread, the loop), so neither needs a lock.
        self._fetched = 0
        self._released = 0
        self._high = max(10_000, spec.prefetch * 10)  # records held before the thread stops taking
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
        self._next_commit = 0.0  # poll thread only
        self._pausing = False  # partitions paused for slow handlers (see _pause_while_full)
        # Every call on the consumer (and every commit) holds this lock: the loop takes records
        # itself when it can have the lock at once, the thread when the loop is parked or quiet.
        self._lock = threading.Lock()
        self._handed = 0.0  # when records last reached the loop (monotonic)
        self._nudge = threading.Event()  # set by the loop when it parks: the thread waits for it
        self._loop_thread = threading.get_ident()

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
        consumer = Consumer(
            {**self._config.consumer(self.group), "error_cb": self._transport._on_client_error}
        )
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
        self._next_commit = time.monotonic() + self._config.commit_interval
        try:
            while not self._stopping:
                if self._fetched - self._released > self._high:
                    # Enough is waiting on the loop: stop taking records until it makes room.
                    # librdkafka keeps prefetching into its own bounded queue meanwhile.
                    self._room.clear()
                    self._full = True
                    if self._fetched - self._released > self._low:
                        self._room.wait(self._hold)
                    self._full = False
                    if self._fetched - self._released > self._high:
                        # Still full after a whole hold: handlers are slow. Poll on (the group
                        # needs it) with the partitions paused, so that nothing more is taken.
                        # Not sooner: a pause drops what librdkafka prefetched (about a second to
                        # fetch again after resume on Tansu).
                        self._pause_while_full(consumer)
                        continue
                if not self._parked and time.monotonic() - self._handed < self._hold:
                    # The loop has records, and takes the next ones itself: wait until it parks
                    # (it then needs a blocking wait for the next record) or goes quiet (slow
                    # handlers: the group must still be polled).
                    # Not longer than the next commit is due: waiting out the whole hold let
                    # commits lag by half a second while the loop took records, and a SIGKILLed
                    # member's next owner handled that half second again (up to 596 records).
                    self._nudge.clear()
                    if not self._parked:
                        due = self._next_commit - time.monotonic()
                        self._nudge.wait(min(self._hold, max(0.01, due)))
                    self._commit_if_due(consumer)
                    continue
                # One consume() per round while records are flowing: each call is one GIL
                # acquisition, which costs up to the interpreter's switch interval (5 ms) while the
                # loop is busy, so each must bring a lot. When nothing is there, poll() blocks
                # until one record is (consume(n, timeout) would wait for n or the whole timeout).
                with self._lock:  # appended under it too: the loop's takes queue behind
                    records = consumer.consume(_BATCH, 0)
                    if not records:
                        first = consumer.poll(0.1)
                        records = (
                            [first, *consumer.consume(_BATCH - 1, 0)] if first is not None else []
                        )
                    queued = self._queue(records)
                    if queued:
                        self._handed = time.monotonic()
                if queued and self._parked:
                    self._loop.soon(self._wake)
                self._commit_if_due(consumer)
        except Exception as exc:  # a fatal consumer error: surface it on __anext__
            log.error("consumer %s failed: %r", self.group, exc)
            self._error = KafkaTransportError(f"consumer of {self._spec.pattern!r} failed: {exc}")
            if self._parked:
                self._loop.soon(self._wake)
        finally:
            with self._lock:
                self._settle_join(consumer)
                self._commit(consumer, asynchronous=False)
                self._consumer = None  # the loop takes no more
                try:
                    consumer.close()  # leaves the group: partitions move to the others at once
                except Exception as exc:
                    log.debug("closing consumer %s: %r", self.group, exc)

    def _pause_while_full(self, consumer: Any) -> None:
        """Keep polling with every assigned partition paused until the loop makes room (or the
        subscription stops); records taken meanwhile (fetched before the pause, or of partitions
        assigned since) still go to the loop. Bounds the records held for slow handlers."""
        log.debug("group %s: handlers are behind, partitions paused", self.group)
        self._pausing = True
        try:
            while not self._stopping and self._fetched - self._released > self._low:
                self._room.clear()
                self._full = True
                with self._lock:
                    consumer.pause(consumer.assignment())  # again: partitions assigned meanwhile
                    queued = self._queue(consumer.consume(_BATCH, 0))
                if queued and self._parked:
                    self._loop.soon(self._wake)
                self._commit_if_due(consumer)
                self._room.wait(self._hold)
        finally:
            self._full = False
            self._pausing = False
            try:
                with self._lock:
                    consumer.resume(consumer.assignment())
            except KafkaException as exc:  # stopping or failing: the consumer is closed next
                log.debug("resuming consumer %s: %s", self.group, exc)

    def _commit_if_due(self, consumer: Any) -> None:
        """The periodic commit of settled positions, every ``commit_interval``."""
        if time.monotonic() >= self._next_commit:
            with self._lock:
                self._commit(consumer, asynchronous=True)
            self._next_commit = time.monotonic() + self._config.commit_interval

    def _queue(self, records: list[Message]) -> bool:
        """Queue what a consume() call returned for the loop, error events logged and left out
        (checked in C first: they are rare); True when any record came. Called holding ``_lock``,
        so that batches reach the loop in the order they were taken."""
        if records and any(map(_error, records)):
            records = self._good(records)
        if not records:
            return False
        self._fetched += len(records)
        self._incoming.append(records)
        return True

    def _good(self, records: list[Message]) -> list[Message]:
        """The records that are records, not errors (logged, except partition EOF)."""
        good = []
        for record in records:
            error = record.error()
            if error is None:
                good.append(record)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer %s: %s", self.group, error)
        return good

    def _settle_join(self, consumer: Any) -> None:
        """Before leaving, let a join in progress finish (bounded by the session timeout).

        A member that leaves in the middle of a join can stay behind as the group's leader on some
        brokers (Tansu 0.6), and the group then never completes another rebalance.
        """
        deadline = time.monotonic() + min(self._config.session_timeout_ms / 1000, 10.0)
        while not self._joined.is_set() and time.monotonic() < deadline:
            # never handed out (the loop is closed): fetched again later by the next owner
            self._queue(consumer.consume(500, 0.05))

    def _commit(
        self, consumer: Any, *, asynchronous: bool, parts: list[_Partition] | None = None
    ) -> None:
        """Commit the partitions' positions that moved since the last commit, holding ``_lock`` (in
        the poll thread, or on the loop for a revoke served during its take).

        ``parts``: those of a revoke, committed even though they are gone; otherwise every assigned
        partition. ``list(dict.values())`` is copied in C, under the GIL: the loop cannot change the
        dict in the middle.
        """
        if parts is None:
            parts = [p for p in list(self._parts.values()) if not p.gone]
        committed = self._committed
        offsets = []
        for part in parts:
            position = part.commit
            if position > committed.get(part.key, -1):
                committed[part.key] = position
                offsets.append(TopicPartition(part.key[0], part.key[1], position))
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=asynchronous)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit for group %s failed: %s", self.group, exc.args[0])

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._joined.set()
        log.debug("group %s assigned %s", self.group, partitions)
        # librdkafka keeps a partition's pause across a revoke and a new assignment: set it anew.
        try:
            if self._pausing:
                consumer.pause(partitions)
            else:
                consumer.resume(partitions)
        except KafkaException as exc:
            log.warning("group %s: pausing/resuming %s failed: %s", self.group, partitions, exc)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        dropped: list[_Partition] = []
        on_loop = threading.get_ident() == self._loop_thread
        log.debug(
            "group %s revoked %d partitions (on the %s)",
            self.group,
            len(keys),
            "loop" if on_loop else "poll thread",
        )
        if on_loop:
            # Served by the loop's own take (see ready()): drop them here. Deliveries in flight
            # (only with concurrency > 1) cannot be waited for on the loop: what is settled is
            # committed, the rest is redelivered to the next owner.
            self._drop(keys, dropped)
        elif self._stopping or not call_soon(self._token, self._drop, keys, dropped):
            dropped = [p for p in list(self._parts.values()) if p.key in keys]
        else:
            # Let the deliveries in flight be settled (bounded), so that their offsets are
            # committed now rather than handled again by the next owner.
            deadline = time.monotonic() + min(self._spec.ack_wait, 30.0)
            while any(p.out for p in dropped if not p.gone) and time.monotonic() < deadline:
                time.sleep(0.005)
        self._commit(consumer, asynchronous=False, parts=dropped)
        for part in dropped:
            part.gone = True
        for key in keys:
            self._committed.pop(key, None)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        if threading.get_ident() == self._loop_thread:
            self._drop(keys, [])
        elif not self._stopping:
            call_soon(self._token, self._drop, keys, [])
        for part in list(self._parts.values()):
            if part.key in keys:
                part.gone = True  # others own them now: commit nothing more
        for key in keys:
            self._committed.pop(key, None)

    # -- loop side -------------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _drop(self, keys: set[_Key], dropped: list[_Partition]) -> None:
        """On the loop: forget revoked partitions and their buffered records; list them in
        ``dropped`` (the poll thread waits for their deliveries in flight, then commits them)."""
        self._distribute()
        for key in keys:
            part = self._parts.pop(key, None)
            if part is None:
                continue
            self._released += len(part.records)
            part.records.clear()
            if any(r[2] is part for r in self._retries):
                # A retry waits: the commit cannot pass it, so it is fetched again by the next
                # owner; nothing to wait for.
                self._retries = [r for r in self._retries if r[2] is not part]
                heapq.heapify(self._retries)
                part.gone = True
            dropped.append(part)
        if keys:
            self._ready = deque(p for p in self._ready if p.key in self._parts)

    def _distribute(self) -> None:
        """Sort the fetched batches into their partitions, a run of records at a time: the records
        are grouped in C (``groupby`` on the records' own accessors), no Python code per record."""
        incoming = self._incoming
        parts = self._parts
        ready = self._ready
        while incoming:
            batch = incoming.popleft()
            for topic, run in groupby(batch, _topic):
                for partition, records in groupby(run, _partition):
                    part = parts.get((topic, partition))
                    if part is None:
                        part = parts[(topic, partition)] = _Partition(self, (topic, partition))
                    part.records.extend(records)
                    if not part.queued:
                        part.queued = True
                        ready.append(part)

    def _retry(self, part: _Partition, record: Message, attempt: int, delay: float) -> None:
        if part.gone or self._parts.get(part.key) is not part:
            part.gone = True  # revoked meanwhile: the next owner has it
            return
        heapq.heappush(self._retries, (time.monotonic() + delay, next(_seq), part, record, attempt))
        self._wake()

    def _retried(self) -> Delivery | None:
        """A due retry, if any."""
        retries = self._retries
        while retries and retries[0][0] <= time.monotonic():
            _, _, part, record, attempt = heapq.heappop(retries)
            if not part.gone:
                return _KafkaDelivery(part, record, record.offset(), attempt)
        return None

    def ready(self) -> Delivery | None:
        """The next record already fetched (a due retry first), or None (also once closed)."""
        if self._incoming or self._retries or self._closed:  # one test per message when none is
            if self._closed:
                return None
            if self._incoming:
                self._distribute()
            if self._retries:
                delivery = self._retried()
                if delivery is not None:
                    return delivery
        ready = self._ready
        while ready:
            part = ready[0]
            records = part.records
            if not records:
                ready.popleft()
                part.queued = False
                continue
            record = records.popleft()
            if not records:
                ready.popleft()
                part.queued = False
            elif len(ready) > 1:
                ready.rotate(-1)  # partitions take turns
            offset = record.offset()
            part.out.append(offset)
            self._released += 1
            if self._full and self._fetched - self._released < self._low:
                self._full = False
                self._room.set()
            return _KafkaDelivery(part, record, offset, 1)
        if self._take():
            return self.ready()
        return None

    def _take(self) -> bool:
        """On the loop, when nothing is at hand: take what librdkafka has already fetched, without
        waiting, if the poll thread is not in a call. True when records came.

        Taking here, a few hundred at a time and only once the last are handed out, is what a
        hand-written loop does: the records are made and dropped on one thread, and few are alive
        at once, so the garbage collector hardly runs (thousands of records handed over from the
        thread at a time survived its young collections and cost a full collection every few
        tens of thousands). The poll thread only blocks for the next record when the loop has
        none, and polls when handlers are too slow to come back for more."""
        if not self._lock.acquire(False):
            return False
        try:  # appended under the lock: a batch of the thread's cannot overtake it
            consumer = self._consumer  # None once the thread closed it
            if consumer is None or self._closed:
                return False
            records = consumer.consume(_TAKE, 0)  # may serve a rebalance: see _on_revoke
            self._handed = time.monotonic()
            return self._queue(records)
        except KafkaException as exc:  # the thread's next call meets it too and reports it
            log.debug("consumer %s: %s", self.group, exc)
            return False
        except Exception as exc:  # a rebalance callback failed here: reopen, as the thread would
            log.error("consumer %s failed: %r", self.group, exc)
            self._error = KafkaTransportError(f"consumer of {self._spec.pattern!r} failed: {exc}")
            return False
        finally:
            self._lock.release()

    async def __anext__(self) -> Delivery:
        while True:
            if self._closed:
                raise StopAsyncIteration
            delivery = self.ready()
            if delivery is not None:
                return delivery
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            await self._park()

    async def _park(self) -> None:
        self._wakeup = event = anyio.Event()
        self._parked = True
        self._nudge.set()
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
