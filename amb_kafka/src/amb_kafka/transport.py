"""The Kafka transport: AMB topics are Kafka topics, groups are consumer groups.

- ``publish`` awaits the broker's delivery report, so a message the broker did not take raises
  :class:`~amb_kafka.errors.KafkaPublishError` instead of vanishing. Concurrent publishes share
  librdkafka's batching (``linger_ms``); how the reports get back cheaply is in
  :mod:`amb_kafka._producer`.
- Topics the bus publishes or subscribes to are created explicitly (``partitions``, ``replication``),
  so that their shape does not depend on the broker's auto-create defaults.
- ``connect`` probes the cluster with a metadata request bounded by ``connect_timeout``: librdkafka
  itself would retry forever.
- Subscriptions: see :mod:`amb_kafka.subscription`.

It runs on asyncio and trio: every blocking driver call is in a thread, and threads come back to the
loop in batches (:mod:`amb_kafka._bridge`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import anyio
import attrs
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from amb_core.errors import NotConnectedError
from amb_core.inbox import INBOX_PREFIX
from amb_core.message import Message
from amb_core.transport import (
    Capabilities,
    ConnectionState,
    Subscription,
    SubscriptionSpec,
    Transport,
)
from amb_core.urls import redact_secrets
from amb_core.wire import encode

from ._bridge import Loop, LoopToken, Waiter
from ._producer import Batch, ProducerPump
from .config import KafkaConfig
from .errors import (
    KafkaAuthenticationError,
    KafkaConnectError,
    KafkaPublishError,
    KafkaTransportError,
    KafkaUnavailableError,
    MessageTooLargeError,
    is_auth_error,
)
from .subscription import KafkaSubscription

__all__ = ["KafkaBroker", "KafkaTransport"]

log = logging.getLogger("amb.kafka")
_PROBE_ROUND = 0.5  # seconds per metadata request while connecting
_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
_UNREACHABLE = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
    }
)
"""Delivery-report errors that mean the broker could not be reached in time."""
_DOWN = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT})
_EPHEMERAL = INBOX_PREFIX + "."
"""Client errors (``error_cb``) that mean the connection is lost: the transport is reconnecting."""
_PROBE_EVERY = 0.5  # seconds between probes of a broker that went away
_LATE_REPORT = 2.0  # seconds a timed-out record's report may come after its publish_timeout


def _probe(admin: AdminClient, errors: list[Any], timeout: float) -> tuple[Any, Any]:
    """``(metadata, None)`` within ``timeout`` seconds, else ``(None, the last KafkaError)``; in a
    worker thread. The error is returned, not raised: its traceback would keep ``admin`` alive.

    Asked in short rounds: librdkafka reports a refused SASL login only through ``error_cb`` (served
    by ``poll``) while the metadata request itself just times out, so between rounds the errors are
    collected and an authentication failure ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return admin.list_topics(timeout=max(0.05, min(_PROBE_ROUND, left))), None
        except KafkaException as exc:
            admin.poll(0)
            if left <= _PROBE_ROUND or any(map(is_auth_error, errors)):
                return None, exc.args[0]


class KafkaTransport(Transport):
    """Kafka through confluent-kafka. Build it from a URL (see :mod:`amb_kafka.config`).

    :param url: ``kafka://[user:password@]host:port[,host:port][?options]``.
    :param options: the URL's options as keywords (they win over the query string).
    """

    scheme = "kafka"
    event_loops = frozenset({"asyncio", "trio"})
    capabilities = Capabilities(
        persistent=True,
        consumer_groups=True,
        at_least_once=True,
        ordered=True,
        native_wildcards=True,
        replay=True,
        headers=True,
        max_message_size=1_000_000,
    )
    """No ``delivery_count``: Kafka keeps no delivery count (commit metadata, the place for one, is
    dropped by Tansu), so a message another member takes over after a crash starts at attempt 1."""

    def __init__(self, url: str = "kafka://localhost:9092", **options: Any) -> None:
        self.config = KafkaConfig.from_url(url, **options)
        self.capabilities = attrs.evolve(
            KafkaTransport.capabilities, max_message_size=self.config.max_message_bytes
        )
        self._limit = self.config.max_message_bytes  # read once: a property parses it each time
        self._next_probe = 0.0
        self._answered_at = float("-inf")  # when a probe last found the broker back
        self._admin: AdminClient | None = None
        self._producer: Producer | None = None
        self._pump: ProducerPump | None = None
        self._loop: Loop | None = None
        self._token: LoopToken = None
        self._topics: set[str] = set()
        self._subscriptions: set[KafkaSubscription] = set()
        self._closed = False

    @property
    def description(self) -> str:
        return f"KafkaTransport {self.config.description}"

    # -- lifecycle -------------------------------------------------------------------------------

    async def connect(self) -> None:
        errors: list[Any] = []
        conf: dict[str, Any] = {**self.config.common(), "error_cb": errors.append}
        admin = AdminClient(conf)
        timeout = self.config.connect_timeout
        metadata, error = await anyio.to_thread.run_sync(_probe, admin, errors, timeout)
        if error is not None:
            # Without the client: a librdkafka handle keeps reconnecting for as long as anything
            # (a traceback kept by the caller) refers to it.
            del admin
            raise self._connect_error(error, errors)
        self._topics = set(metadata.topics)
        self._admin = admin
        self._loop = loop = Loop()
        self._token = loop.token
        self._producer = self._new_producer()
        self._pump = ProducerPump(self._producer, loop, self._probe)
        self._closed = False
        self._set_state(ConnectionState.CONNECTED)

    def _new_producer(self) -> Producer:
        return Producer({**self.config.producer(), "error_cb": self._on_client_error})

    def _on_client_error(self, error: Any) -> None:
        """librdkafka's client-level errors (on whichever thread polls): a lost connection makes
        the transport RECONNECTING until :meth:`_probe` or a confirmed delivery says otherwise."""
        if error.code() in _DOWN:
            self._lost(error)

    def _lost(self, error: Any) -> None:
        """The broker is unreachable (a lost connection, or a delivery that timed out): the
        transport is RECONNECTING until :meth:`_probe` or a confirmed delivery says otherwise."""
        if self._closed:
            return
        if self._state is ConnectionState.CONNECTED:
            log.warning("Kafka at %s unreachable: %s", self.config.description, error.str())
        self._set_state(ConnectionState.RECONNECTING)

    def _probe(self) -> None:
        """Called by the producer's pump thread between polls: while reconnecting, ask for the
        cluster's metadata every half second; an answer means the broker is back."""
        if self._state is not ConnectionState.RECONNECTING or self._closed:
            return
        now = time.monotonic()
        if now < self._next_probe:
            return
        self._next_probe = now + _PROBE_EVERY
        producer = self._producer
        if producer is None:
            return
        try:
            producer.list_topics(timeout=_PROBE_EVERY)
        except KafkaException:
            return
        self._back()

    def _back(self) -> None:
        self._answered_at = time.monotonic()
        if self._state is ConnectionState.RECONNECTING and not self._closed:
            log.warning("Kafka at %s reachable again", self.config.description)
            self._set_state(ConnectionState.CONNECTED)

    def _connect_error(self, error: Any, errors: list[Any]) -> KafkaConnectError:
        """The typed error for a failed probe, with librdkafka's most telling reason (an
        authentication failure first), the password cut out of it should it ever be there."""
        where, timeout = self.config.description, self.config.connect_timeout
        refused = [e for e in errors if is_auth_error(e)]
        if is_auth_error(error):
            refused.append(error)
        reason = redact_secrets((refused or errors or [error])[-1].str(), self.config.password)
        if refused:
            return KafkaAuthenticationError(f"Kafka at {where} refused the credentials: {reason}")
        return KafkaConnectError(f"cannot reach Kafka at {where} within {timeout:g}s: {reason}")

    async def aclose(self) -> None:
        if self._closed or self._producer is None:
            self._closed = True
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            for sub in list(self._subscriptions):
                await sub.aclose()
            pump, self._pump = self._pump, None
            if pump is not None:
                await anyio.to_thread.run_sync(pump.stop)
        # librdkafka handles live (and keep reconnecting to a broker that is gone) for as long as
        # a reference does: drop both, the admin client too.
        self._producer = None
        self._admin = None

    def _renew_producer(self) -> None:
        """Replace a producer that hit a fatal error (e.g. its idempotence state is gone because
        the broker lost it): this publish fails, the next ones work again."""
        old = self._pump
        if old is None or old.producer is not self._producer or self._loop is None:
            return
        log.warning("Kafka producer failed fatally; starting a new one")
        old.stopping = True  # its thread flushes what it can and resolves the waiting publishes
        self._producer = self._new_producer()
        self._pump = ProducerPump(self._producer, self._loop, self._probe)

    # -- topics ----------------------------------------------------------------------------------

    async def ensure_topic(self, topic: str) -> None:
        """Create ``topic`` with the configured partitions unless it exists.

        :raises KafkaTransportError: when the broker refuses.
        """
        if topic in self._topics:
            return
        admin = self._admin
        assert admin is not None
        config = self.config
        # A reply inbox (and the cancel topic) is read by one bus: more partitions would only
        # spread one reader's replies; every other topic gets enough for a group to scale.
        partitions = 1 if topic.startswith(_EPHEMERAL) else config.partitions
        futures = admin.create_topics(
            [NewTopic(topic, partitions, config.replication)],
            operation_timeout=config.connect_timeout,
        )

        def wait() -> None:
            try:
                futures[topic].result(config.connect_timeout + 5)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaTransportError(
                        f"cannot create topic {topic!r}: {exc.args[0].str()}"
                    ) from None

        await anyio.to_thread.run_sync(wait)
        self._topics.add(topic)

    def _delete_group(self, group: str) -> None:
        """Forget a fan-out subscriber's private group (best effort, not awaited)."""
        if self._admin is not None:
            try:
                self._admin.delete_consumer_groups([group], request_timeout=5)
            except Exception as exc:
                log.debug("deleting group %s: %r", group, exc)

    # -- publish ---------------------------------------------------------------------------------

    def _check(self) -> ProducerPump:
        pump = self._pump
        if pump is None or self._closed:
            raise NotConnectedError(f"{self.description} is not connected")
        return pump

    async def _produce(
        self, pump: ProducerPump, topic: str, body: bytes, key: bytes | None, headers: Any
    ) -> Waiter:
        """Produce, waiting (without blocking the loop) while librdkafka's local queue is full."""
        while True:
            try:
                return pump.produce(topic, body, key, headers)
            except BufferError:  # the local queue is full: let the broker catch up
                pump.poll()
                await anyio.sleep(0.001)
            except KafkaException as exc:
                raise self._publish_error(topic, exc.args[0], len(body)) from None

    def _publish_error(self, topic: str, error: Any, size: int) -> Exception:
        if error.fatal() or error.code() == KafkaError._FATAL:
            self._renew_producer()
        if error.code() in _TOO_LARGE:
            return MessageTooLargeError(size, self.config.max_message_bytes, topic)
        if error.code() in _UNREACHABLE:
            if error.code() == KafkaError._MSG_TIMED_OUT and self._answered_recently():
                self._renew_producer()
            # A broker that hangs (connections open, no answers) drops no connection, so
            # error_cb says nothing until librdkafka's socket.timeout.ms (60 s) is over; a
            # delivery that timed out tells it after publish_timeout. The probe turns the
            # state back at once if the broker answers after all.
            self._lost(error)
            return KafkaUnavailableError(
                f"Kafka at {self.config.description} did not confirm the message for {topic!r} "
                f"within publish_timeout={self.config.publish_timeout:g}s: {error.str()}"
            )
        return KafkaPublishError(f"Kafka did not take the message for {topic!r}: {error.str()}")

    def _answered_recently(self) -> bool:
        """Whether the broker answered a probe within the last ``publish_timeout``: a record timed
        out although the broker was reachable for part of its life. That is a producer stuck on
        its idempotence state: a broker restarted without it (memory storage) leaves the
        producer's id unknown, and librdkafka retries every record of a partition it had written
        to until it times out, publish after publish, without a fatal error. Seen on Tansu with
        several partitions; the one-partition case happened to end in a fatal error instead.

        With a margin: librdkafka looks for timed-out records once a second, and a loaded machine
        reports them later still (a window of ``publish_timeout`` alone missed the probe by a few
        tenths, publish after publish, for a minute)."""
        return time.monotonic() - self._answered_at < self.config.publish_timeout + _LATE_REPORT

    def _check_size(self, message: Message, body: bytes, headers: dict[str, str]) -> None:
        """Refuse a record over ``message.max.bytes`` before it is produced, naming the limit
        (librdkafka refuses at about the same size, with no limit in its text)."""
        limit = self._limit
        if len(body) + 512 < limit:  # the usual message: no need to count its headers
            return
        size = len(body) + len(message.key or "") + sum(len(k) + len(v) for k, v in headers.items())
        if size > limit:
            raise MessageTooLargeError(size, limit, message.topic)

    async def publish(self, message: Message) -> None:
        pump = self._check()
        topic = message.topic
        if topic not in self._topics:
            await self.ensure_topic(topic)
        body, headers = encode(message)
        self._check_size(message, body, headers)
        key = message.key.encode() if message.key is not None else None
        try:
            waiter = pump.produce(topic, body, key, headers)
        except BufferError:
            waiter = await self._produce(pump, topic, body, key, headers)
        except KafkaException as exc:
            raise self._publish_error(topic, exc.args[0], len(body)) from None
        error = await waiter
        if error is not None:
            raise self._publish_error(topic, error, len(body))
        if self._state is ConnectionState.RECONNECTING:
            self._back()

    async def publish_many(self, messages: Iterable[Message]) -> None:
        """Produce all, then await all their delivery reports at once, as a raw produce-then-flush
        loop does: one :class:`~._producer.Batch` callback for every message, one waiter.

        Not atomic. A message librdkafka refuses outright (too large) ends the batch there: what
        was produced before it is awaited, then the first failure is raised (a failed delivery of
        an earlier message first, in report order; else the refusal).

        :raises KafkaPublishError: when a delivery report carries an error.
        :raises MessageTooLargeError: when a message exceeds the size librdkafka accepts.
        """
        pump = self._check()
        batch = Batch(pump)
        report = batch.report
        produce: Any = pump.producer.produce
        # a body this much under the limit fits whatever its headers: _check_size only past it
        large = self._limit - 512
        refused: Exception | None = None
        pump.batching = True  # the pump thread stays out of the way until the batch is produced
        try:
            for message in messages:
                topic = message.topic
                if topic not in self._topics:
                    await self.ensure_topic(topic)
                body, headers = encode(message)
                if len(body) >= large:
                    try:
                        self._check_size(message, body, headers)
                    except MessageTooLargeError as exc:
                        refused = exc
                        break
                key = message.key.encode() if message.key is not None else None
                while True:
                    try:
                        produce(topic, body, key, headers=headers, on_delivery=report)
                        break
                    except BufferError:  # librdkafka's local queue is full: let the broker catch up
                        pump.poll()
                        await anyio.sleep(0.001)
                    except KafkaException as exc:
                        refused = self._publish_error(topic, exc.args[0], len(body))
                        break
                if refused is not None:
                    break
                batch.sent += 1
        finally:
            pump.batching = False
        pump.poll()  # reports already there are counted now; the pump thread serves the rest
        batch.close()
        pump.flushing += 1  # the batch is complete: the pump sends it without lingering
        try:
            await batch.waiter
        finally:
            pump.flushing -= 1
        if batch.failed:
            error, record = batch.failed[0]
            raise self._publish_error(record.topic(), error, len(record.value() or b""))
        if refused is not None:
            raise refused

    async def publish_raw(
        self,
        topic: str,
        body: bytes,
        headers: dict[str, str] | None = None,
        key: bytes | None = None,
    ) -> None:
        """Produce bytes as another program would (no AMB metadata); awaits the delivery report."""
        pump = self._check()
        await self.ensure_topic(topic)
        waiter = await self._produce(pump, topic, body, key, headers)
        error = await waiter
        if error is not None:
            raise self._publish_error(topic, error, len(body))

    # -- subscribe -------------------------------------------------------------------------------

    async def subscribe(self, spec: SubscriptionSpec) -> Subscription:
        self._check()
        sub = KafkaSubscription(self, spec)
        if sub._regex is None:
            await self.ensure_topic(spec.pattern)
        await sub.start()
        self._subscriptions.add(sub)
        return sub

    def _forget(self, sub: KafkaSubscription) -> None:
        self._subscriptions.discard(sub)


KafkaBroker = KafkaTransport
"""The seed's name: ``KafkaBroker(url=...)``."""
