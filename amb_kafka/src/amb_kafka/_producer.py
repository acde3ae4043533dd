"""The producer side: produce on the loop, resolve each publish when its delivery report arrives.

Why it is shaped this way (each point measured with ``python -m bench kafka`` and a profile of the
"many in flight" case):

- **Reports are served on the loop thread while the loop is publishing.** Each ``publish`` calls
  ``poll(0)`` after ``produce``, as a hand-written confluent-kafka loop does, so the reports that are
  ready run their callbacks right there and resolve their waiters directly: no thread hop, no lock.
  A thread that served every report instead took the GIL once per report while the loop held it, and
  the two threads handed the GIL back and forth per message; that, not Python code, was most of the
  bus's cost per message.
- **A thread serves them while the loop is idle.** When every publisher is waiting, nobody on the
  loop polls; the pump thread notices that the loop has not polled for :data:`IDLE` seconds, blocks
  in ``poll`` (in C, without the GIL) and hands what it gets to the loop in one non-blocking hop per
  ``poll``. So a lone awaited publish returns as soon as its report arrives.
- **The cheapest waiter the loop has**: an asyncio future on asyncio (see :class:`._bridge.Loop`).
- **A batch (``publish_many``) has one waiter for all its messages**: every message of it reports to
  the same bound method of one :class:`Batch` (no object per message), which counts the reports on
  the loop and keeps the failed ones; the batch's waiter resolves once every produced message has
  reported.
- **A batch is sent at once.** While a ``publish_many`` awaits its reports, the pump thread serves
  them with ``flush`` instead of ``poll``: librdkafka then sends what it holds without waiting out
  ``linger_ms``. The batch is complete when it is awaited; lingering for more messages to join it
  only added ``linger_ms`` to every batch. Single publishes keep ``linger_ms`` as configured,
  except one made while the batch's last ``flush(0.05)`` call still runs (up to 50 ms after the
  batch is confirmed): it goes out with that flush, sooner than ``linger_ms``, never later.
- **No publish waits forever.** On close the pump flushes for a bounded time, then purges what is
  left: librdkafka then reports those messages as failed, and their publishes raise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import KafkaException, Producer

from ._bridge import Loop, Waiter

__all__ = ["IDLE", "Batch", "ProducerPump"]

log = logging.getLogger("amb.kafka")
IDLE = 0.0005
"""Seconds without a poll from the loop after which the pump thread serves reports itself."""
_monotonic = time.monotonic
_get_ident = threading.get_ident


def _reporter(loop_thread: int, handover: deque[tuple[Waiter, Any]]) -> Callable[..., None]:
    """The ``on_delivery`` callback of one pump, bound per message to its waiter with ``partial``
    (cheaper than an object per message): resolves the waiter with the error, or None."""

    def report(waiter: Waiter, error: Any, record: Any) -> None:
        if _get_ident() == loop_thread:
            if not waiter.done():  # a cancelled publish leaves a cancelled future behind
                waiter.set_result(error)
        else:
            handover.append((waiter, error))

    return report


class Batch:
    """The delivery reports of one ``publish_many``: counted where they are served, one waiter.

    :meth:`report` is the ``on_delivery`` callback of every message of the batch, served on the
    loop (``poll(0)`` there) or in the pump thread. Each side counts in a counter of its own, so no
    count is ever written by two threads and no lock is needed; the waiter is resolved on the loop,
    by the report that completes the batch (through the pump's handover when that one is served in
    the thread: one hop per batch, not one per report).
    """

    __slots__ = ("closed", "failed", "handover", "local", "loop_thread", "remote", "sent", "waiter")

    def __init__(self, pump: ProducerPump) -> None:
        self.waiter = pump.new_waiter()
        self.loop_thread = pump.loop_thread
        self.handover = pump.handover
        self.sent = 0  # produced (the caller counts)
        self.local = 0  # reports served on the loop
        self.remote = 0  # reports served in the pump thread
        self.closed = False  # everything is produced: the waiter may resolve
        self.failed: list[tuple[Any, Any]] = []  # (KafkaError, record), in report order

    def report(self, error: Any, record: Any) -> None:
        if error is not None:
            self.failed.append((error, record))
        if _get_ident() == self.loop_thread:
            self.local += 1
            if self.closed and self.local + self.remote == self.sent:
                self._resolve()
        else:
            self.remote += 1
            if self.closed and self.local + self.remote == self.sent:
                self.handover.append((self, None))  # type: ignore[arg-type]

    def close(self) -> None:
        """Every message is produced (``sent`` is final): resolve once all have reported."""
        self.closed = True
        if self.local + self.remote == self.sent:
            self._resolve()

    # The Waiter interface the pump's handover uses.

    def done(self) -> bool:
        return self.waiter.done()

    def set_result(self, result: Any) -> None:
        self._resolve()

    def _resolve(self) -> None:
        if not self.waiter.done():  # a cancelled publish_many leaves a cancelled future behind
            self.waiter.set_result(None)


class ProducerPump:
    """One producer's delivery reports. Made on the loop; see the module docstring."""

    def __init__(
        self, producer: Producer, loop: Loop, probe: Callable[[], None] | None = None
    ) -> None:
        self.producer = producer
        self.probe = probe  # called by the pump thread between polls (the transport's health check)
        self.loop = loop
        self.loop_thread = loop.thread
        self.new_waiter = loop.future
        self.handover: deque[tuple[Waiter, Any]] = deque()
        self.report = _reporter(loop.thread, self.handover)
        self.hop_pending = False
        self.polled = 0.0  # when the loop last polled (monotonic)
        self.batching = False  # the loop is producing a batch and polls when it is done
        self.flushing = 0  # batches produced and awaited: send now, do not linger (loop writes)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="amb-kafka-producer", daemon=True)
        self.thread.start()

    # -- on the loop -----------------------------------------------------------------------------

    def produce(self, topic: str, body: bytes, key: bytes | None, headers: Any) -> Waiter:
        """Produce one message and return the waiter its delivery report resolves.

        :raises BufferError: when librdkafka's local queue is full (the caller waits and retries).
        :raises KafkaException: when librdkafka refuses the message outright.
        """
        waiter = self.new_waiter()
        producer = self.producer
        producer.produce(
            topic, body, key, headers=headers, on_delivery=partial(self.report, waiter)
        )
        self.polled = _monotonic()
        producer.poll(0)
        return waiter

    def poll(self) -> None:
        """Serve the reports that are ready, on the loop."""
        self.polled = _monotonic()
        self.producer.poll(0)

    def _drain(self) -> None:
        self.hop_pending = False
        handover = self.handover
        while handover:
            waiter, error = handover.popleft()
            if not waiter.done():
                waiter.set_result(error)

    # -- in the pump thread ----------------------------------------------------------------------

    def _run(self) -> None:
        producer = self.producer
        while not self.stopping:
            quiet = _monotonic() - self.polled
            if quiet < IDLE or self.batching:  # the loop is publishing and serves its own reports
                time.sleep(IDLE - quiet if quiet < IDLE else IDLE)
                continue
            try:
                if self.flushing:
                    producer.flush(0.05)
                else:
                    producer.poll(0.05)
            except KafkaException as exc:  # a fatal error surfaces here and on the reports
                log.warning("Kafka producer: %s", exc.args[0])
                time.sleep(0.05)
            self._hand_over()
            if self.probe is not None:
                self.probe()
        try:
            left = producer.flush(5.0)
            if left:
                log.warning("Kafka producer: %d messages not delivered at close", left)
                producer.purge()  # their reports now carry _PURGE_*: their publishes raise
                producer.poll(0)
        except KafkaException as exc:
            log.debug("flushing the Kafka producer: %s", exc.args[0])
        self._hand_over()

    def _hand_over(self) -> None:
        if self.handover and not self.hop_pending:
            self.hop_pending = True
            if not self.loop.soon(self._drain):
                self.stopping = True

    def stop(self) -> None:
        """Flush, resolve every waiting publish, end the thread (blocking: call from a thread)."""
        self.stopping = True
        self.thread.join()
