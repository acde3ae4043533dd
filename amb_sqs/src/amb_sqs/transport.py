"""The SQS transport: pub/sub the AWS way, SNS fan-out into SQS queues.

Publishing sends to the namespace's one SNS topic, with the AMB topic in the ``amb-topic`` message
attribute. Every subscription is an SQS queue subscribed to that SNS topic with raw delivery and a
filter policy on ``amb-topic`` (see :mod:`amb_sqs.naming`):

- a consumer group shares one durable queue, so its members compete for messages, and the queue keeps
  collecting while no member runs (``persistent``);
- a fan-out subscriber gets a queue of its own, deleted (with its SNS subscription) when it closes.

Settling: ``ack`` deletes the message (batched: deletes issued together go in one
``DeleteMessageBatch``); ``nack(delay)`` sets the message's visibility timeout to ``delay``, so SQS
redelivers it then (``native_delay``); ``ApproximateReceiveCount`` is the attempt number. Every queue
has a redrive policy to the namespace's DLQ queue after ``max_attempts + redrive_margin`` receives:
the bus dead-letters failing messages itself after ``max_attempts``, so SQS's redrive only catches
messages whose consumers kept dying mid-handler (see :meth:`SQSTransport.sweep_dead_letters`).

Throughput: concurrent publishes are batched into ``PublishBatch`` calls of up to 10 (a few batches in
flight at once), each subscription runs ``pollers`` long-poll receive loops of up to 10 messages, and
deliveries are handed over through a deque, not a stream hop per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import attrs

from amb_core.aio import cancel_and_wait
from amb_core.deadletter import DLQ_PREFIX
from amb_core.errors import ConfigurationError, NotConnectedError, UnsupportedError
from amb_core.message import Message
from amb_core.topics import matcher
from amb_core.transport import (
    Capabilities,
    ConnectionState,
    Delivery,
    Subscription,
    SubscriptionSpec,
    Transport,
)
from amb_core.wire import H_KEY

from ._liveness import Liveness
from .codec import MAX_SIZE, from_sqs, to_sns
from .config import SQSConfig, parse_url
from .errors import SQSError, SQSPublishError, error_code, translate
from .naming import (
    archive_queue_name,
    dlq_queue_name,
    fallback_topic,
    fanout_queue_name,
    filter_policy,
    group_queue_name,
    topic_name,
)

__all__ = ["SQSBroker", "SQSTransport"]

log = logging.getLogger("amb.sqs")
_BATCH = 10
_PUBLISH_FLIGHTS = 4
_NOT_FOUND = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_SHORT_POLL_PAUSE = 0.05
_RECEIVE_BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0)


_Pending = tuple[dict[str, Any], int, asyncio.Future[None]]
"""A publish waiting for a batch: its ``PublishBatch`` entry, its size as SNS counts it, and the
future its caller awaits."""


def _take_batch(pending: deque[_Pending]) -> list[_Pending]:
    """The next ``PublishBatch`` off ``pending``: up to 10 entries whose sizes add up to at most
    :data:`MAX_SIZE`, since SNS refuses a whole batch over 256 KiB in all (``BatchRequestTooLong``),
    not only a single message over it. Every entry alone fits (:func:`to_sns` checked)."""
    batch = [pending.popleft()]
    total = batch[0][1]
    while pending and len(batch) < _BATCH and total + pending[0][1] <= MAX_SIZE:
        total += pending[0][1]
        batch.append(pending.popleft())
    return batch


class _SQSDelivery(Delivery):
    __slots__ = ("_handle", "_sub")

    def __init__(
        self, sub: _SQSSubscription, handle: str, message: Message, attempt: int, error: Any
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
        await sub.change_visibility([self._handle], seconds)


class _SQSSubscription(Subscription):
    """One SQS queue read by ``pollers`` long-poll loops into a local deque."""

    def __init__(
        self,
        transport: SQSTransport,
        spec: SubscriptionSpec,
        queue_url: str,
        subscription_arn: str | None,
        owned: bool,
        only: Callable[[str], bool] | None = None,
    ) -> None:
        self.transport = transport
        self.spec = spec
        self.queue_url = queue_url
        self.subscription_arn = subscription_arn
        self.owned = owned  # a fan-out queue: deleted on close
        self.only = only  # reading the dead-letter archive: deliver only these topics
        self.held: list[str] = []  # archive messages for other patterns, released at close
        self.topic = fallback_topic(spec.pattern)
        self.visibility = max(1, math.ceil(spec.ack_wait))
        self.buffer: deque[_SQSDelivery] = deque()
        self.limit = max(_BATCH, min(spec.prefetch, 10 * transport.config.pollers))
        self.outstanding: dict[str, _SQSDelivery] = {}
        self.closed = False
        self.error: BaseException | None = None
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._acks: list[str] = []
        self._ack_task: asyncio.Task[None] | None = None
        pollers = 1 if transport.config.fifo else transport.config.pollers
        self._pollers = [asyncio.ensure_future(self._poll()) for _ in range(pollers)]
        self._heartbeat = (
            asyncio.ensure_future(self._beat()) if transport.config.heartbeat else None
        )

    # -- receiving -------------------------------------------------------------------------------

    async def _poll(self) -> None:
        transport = self.transport
        sqs = transport.sqs
        failures = 0
        fifo = transport.config.fifo
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
            try:
                response = await sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=_BATCH,
                    WaitTimeSeconds=transport.config.wait,
                    VisibilityTimeout=self.visibility,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.closed:
                    return
                if error_code(exc) in _NOT_FOUND:
                    self.error = translate(exc, "receive", transport.description)
                    self._ready.set()
                    return
                delay = _RECEIVE_BACKOFF[min(failures, len(_RECEIVE_BACKOFF) - 1)]
                failures += 1
                log.warning(
                    "receive from %s failed (%s); retrying in %.2fs",
                    transport.description,
                    translate(exc, "receive", transport.description),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            records = response.get("Messages")
            if not records:
                if not transport.config.wait:  # short polling: do not spin on an empty queue
                    await asyncio.sleep(_SHORT_POLL_PAUSE)
                continue
            if self.closed:  # received while closing: give them straight back
                await self.change_visibility([r["ReceiptHandle"] for r in records], 0)
                return
            for record in records:
                attempt = int(record.get("Attributes", {}).get("ApproximateReceiveCount", 1))
                message, error = from_sqs(record, self.topic, attempt)
                self.buffer.append(
                    _SQSDelivery(self, record["ReceiptHandle"], message, attempt, error)
                )
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
        """Keep what this member holds invisible while it lives: every half visibility timeout,
        extend the timeout of its prefetched and in-handler messages. A handler slower than
        ``ack_wait`` (an LLM call) thus causes no duplicate; a dead process stops extending, and
        its messages reappear one timeout later."""
        period = self.visibility / 2
        while not self.closed:
            await asyncio.sleep(period)
            handles = [d._handle for d in self.buffer] + list(self.outstanding) + self.held
            if handles and not self.closed:
                await self.change_visibility(handles, self.visibility, quiet=True)

    # -- settling --------------------------------------------------------------------------------

    def _settled(self) -> bool:
        task = self._ack_task
        return not (self.buffer or self.outstanding or self._acks or (task and not task.done()))

    def queue_ack(self, handle: str) -> None:
        self._acks.append(handle)
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.ensure_future(self._flush_acks())

    async def _flush_acks(self) -> None:
        await asyncio.sleep(0)  # let acks issued in the same tick join the batch
        sqs = self.transport.sqs
        while self._acks:
            batch, self._acks[:] = self._acks[:_BATCH], self._acks[_BATCH:]
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(batch)]
            try:
                response = await sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
                failed = response.get("Failed") or []
            except Exception as exc:
                failed = entries
                log.warning("deleting acknowledged messages failed: %s", exc)
            if failed:
                log.warning(
                    "%d acknowledged messages were not deleted on %s; they will be redelivered",
                    len(failed),
                    self.transport.description,
                )

    async def change_visibility(
        self, handles: list[str], seconds: int, *, quiet: bool = False
    ) -> None:
        sqs = self.transport.sqs
        for start in range(0, len(handles), _BATCH):
            entries = [
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": seconds}
                for i, h in enumerate(handles[start : start + _BATCH])
            ]
            try:
                await sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as exc:  # it comes back after its visibility timeout anyway
                (log.debug if quiet else log.warning)(
                    "changing visibility on %s failed: %s", self.transport.description, exc
                )

    # -- closing ---------------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._ready.set()
        self._space.set()
        self.transport._subscriptions.discard(self)
        if self._heartbeat is not None:
            await cancel_and_wait(
                self._heartbeat, f"the heartbeat of {self.spec.pattern!r}", log=log
            )
        if self.owned:
            for task in self._pollers:
                task.cancel()
        # A group's queue lives on: let the current long polls finish so that no message they
        # return is stranded invisible, then hand back what this member held unsettled.
        done, pending = await asyncio.wait(
            self._pollers,
            timeout=self.transport.config.wait + self.transport.config.connect_timeout,
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
            await self.transport._drop_queue(self.queue_url, self.subscription_arn)
            return
        left = [d._handle for d in self.buffer] + list(self.outstanding) + self.held
        self.held = []
        self.buffer.clear()
        self.outstanding.clear()
        if left:
            await self.change_visibility(left, 0)


async def _within(work: Coroutine[Any, Any, None], seconds: float) -> None:
    """Run ``work``, cancelled after ``seconds``.

    Not ``asyncio.wait_for``: before Python 3.12 it can lose the caller's own cancellation when
    ``work`` ends at the moment the caller is cancelled. Here the caller's cancellation always
    propagates (``asyncio.wait`` never absorbs it), and ``work`` is cancelled with it.

    :raises TimeoutError: when ``work`` did not end in time.
    """
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait([task], timeout=seconds)
    finally:
        if not task.done():
            await cancel_and_wait(task, "declaring the namespace", log=log)
    if task.cancelled():
        raise TimeoutError(f"no answer within {seconds:g}s")
    task.result()


async def _close_clients(stack: contextlib.AsyncExitStack, description: str) -> None:
    """Close the aiobotocore clients; a failure is logged (there is nothing left to undo), and
    cancellation goes through."""
    try:
        await stack.aclose()
    except Exception as exc:
        log.warning("closing the clients of %s failed: %r", description, exc)


class SQSTransport(Transport):
    """AMB over Amazon SQS and SNS (aiobotocore).

    :param url: ``sqs://...`` (see :mod:`amb_sqs.config` and ``docs/backends/sqs.md``).
    :param options: override the URL's query options (``region``, ``endpoint``, ``namespace``,
        ``fifo``, ``wait``, ``pollers``, ``redrive_margin``, ``fanout_retention``, ``profile``...).
    """

    scheme = "sqs"
    event_loops = frozenset({"asyncio"})
    capabilities = Capabilities(  # standard mode; FIFO mode adds ``ordered``
        persistent=True,
        consumer_groups=True,
        at_least_once=True,
        native_delay=True,
        native_dead_letter=True,  # redrive; proven by test_native_redrive_reaches_the_bus...
        dead_letter_replay=True,  # the archive queue (``dlq_archive``, on by default)
        headers=True,
        delivery_count=True,  # ApproximateReceiveCount
        max_message_size=MAX_SIZE,
    )

    def __init__(self, url: str = "sqs://", **options: Any) -> None:
        self.config: SQSConfig = parse_url(url, **options)
        self.capabilities = attrs.evolve(
            self.capabilities, ordered=self.config.fifo, dead_letter_replay=self.config.dlq_archive
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self.sns: Any = None
        self.sqs: Any = None
        self.topic_arn = ""
        self.dlq_url = ""
        self.dlq_arn = ""
        self.archive_url = ""
        self._closed = False
        self._subscriptions: set[_SQSSubscription] = set()
        self._pending: deque[_Pending] = deque()
        self._flights = 0
        # Batches in flight at once. FIFO: one, or a later batch could overtake an earlier one
        # and break the order of a message group (SNS keeps order only within a batch).
        self._max_flights = 1 if self.config.fifo else _PUBLISH_FLIGHTS
        self._tasks: set[asyncio.Task[None]] = set()
        self._group_lock = asyncio.Lock()
        self._liveness: Liveness | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQSTransport:
        return cls(url, **options)

    @property
    def description(self) -> str:
        return self.config.description

    # -- lifecycle -------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self.sqs is not None:
            return
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = self.config
        session = get_session()
        if config.profile:
            session.set_config_variable("profile", config.profile)
        client_config = AioConfig(
            connect_timeout=config.connect_timeout,
            read_timeout=config.wait + 10,
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=config.pool,
        )
        stack = contextlib.AsyncExitStack()
        try:
            for service in ("sqs", "sns"):
                client = await stack.enter_async_context(
                    session.create_client(
                        service,
                        region_name=config.region,
                        endpoint_url=config.endpoint,
                        config=client_config,
                    )
                )
                setattr(self, service, client)
            bound = config.connect_timeout * 3 + 1
            await _within(self._declare_namespace(), bound)
        except BaseException as exc:
            self.sqs = self.sns = None
            await _close_clients(stack, self.description)
            if isinstance(exc, Exception):
                raise translate(exc, "connect", self.description) from None
            raise
        self._stack = stack
        self._closed = False
        self._set_state(ConnectionState.CONNECTED)  # the declarations just got through
        self._liveness = Liveness(self._set_state, self._probe, self.description)
        for client in (self.sqs, self.sns):
            self._liveness.watch(client)

    async def _probe(self) -> None:
        """One cheap request, to learn whether the endpoint answers (see :mod:`._liveness`)."""
        await self.sqs.list_queues(QueueNamePrefix=self.config.namespace, MaxResults=1)

    async def _declare_namespace(self) -> None:
        """Create (idempotently) the namespace's SNS topic and its native DLQ queue."""
        config = self.config
        attributes = {"FifoTopic": "true"} if config.fifo else {}
        created = await self.sns.create_topic(
            Name=topic_name(config.namespace, config.fifo), Attributes=attributes
        )
        self.topic_arn = created["TopicArn"]
        dlq_attributes = {"MessageRetentionPeriod": "1209600"}
        if config.fifo:
            dlq_attributes["FifoQueue"] = "true"
        self.dlq_url, self.dlq_arn = await self._ensure_queue(
            dlq_queue_name(config.namespace, config.fifo), dlq_attributes
        )
        if config.dlq_archive:
            # Every dead letter published on dlq.* also lands here, kept 14 days, so that
            # ``bus.dead_letters`` / ``amb dlq`` can list and replay what was published before.
            self.archive_url, arn = await self._ensure_queue(
                archive_queue_name(config.namespace, config.fifo), dlq_attributes
            )
            if await self._find_subscription(arn) is None:
                await self._subscribe_queue(arn, DLQ_PREFIX + ">", self.archive_url)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._set_state(ConnectionState.CLOSED)  # requests failing while closing change nothing
        if self._liveness is not None:
            await self._liveness.aclose()
            self._liveness = None
        # Concurrently: each group subscription may wait for its current long poll.
        subscriptions = list(self._subscriptions)
        results = await asyncio.gather(
            *(sub.aclose() for sub in subscriptions), return_exceptions=True
        )
        for sub, result in zip(subscriptions, results, strict=True):
            if isinstance(result, Exception):
                log.warning("closing the subscription to %r failed: %r", sub.spec.pattern, result)
        while self._pending:
            _, _, future = self._pending.popleft()
            if not future.done():
                future.set_exception(NotConnectedError(f"{self.description} closed"))
        stack, self._stack = self._stack, None
        if stack is not None:
            await _close_clients(stack, self.description)
        self.sqs = self.sns = None

    def _check(self) -> None:
        if self.sqs is None or self._closed:
            raise NotConnectedError(f"{self.description} is not connected")

    # -- publishing ------------------------------------------------------------------------------

    def _entry(self, message: Message) -> tuple[dict[str, Any], int]:
        """The ``PublishBatch`` entry for ``message`` and its size as SNS counts it.

        :raises MessageTooLargeError: over :data:`MAX_SIZE`, before anything is sent.
        """
        text, attributes, size = to_sns(message)
        entry: dict[str, Any] = {"Message": text, "MessageAttributes": attributes}
        if self.config.fifo:
            key = message.key or message.headers.get(H_KEY) or message.topic
            entry["MessageGroupId"] = key[:128]
            entry["MessageDeduplicationId"] = message.id[:128]
        return entry, size

    async def publish(self, message: Message) -> None:
        self._check()
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
        self._check()
        entries = [self._entry(message) for message in messages]
        loop = asyncio.get_running_loop()
        futures = []
        for entry, size in entries:
            future: asyncio.Future[None] = loop.create_future()
            self._pending.append((entry, size, future))
            futures.append(future)
        while self._flights < self._max_flights and self._flights * _BATCH < len(self._pending):
            self._spawn_flush()
        await asyncio.gather(*futures)

    def _spawn_flush(self) -> None:
        self._flights += 1
        task = asyncio.ensure_future(self._flush_publishes())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_publishes(self) -> None:
        """Send pending publishes in batches of up to 10 until none is left."""
        try:
            pending = self._pending
            while pending and self.sns is not None:
                batch = _take_batch(pending)
                entries = [{**entry, "Id": str(i)} for i, (entry, _, _) in enumerate(batch)]
                try:
                    try:
                        response = await self.sns.publish_batch(
                            TopicArn=self.topic_arn, PublishBatchRequestEntries=entries
                        )
                    except Exception as exc:
                        if error_code(exc) != "NotFound":
                            raise
                        # The topic is gone (deleted, or an emulator restarted): declare again.
                        await self._declare_namespace()
                        response = await self.sns.publish_batch(
                            TopicArn=self.topic_arn, PublishBatchRequestEntries=entries
                        )
                except Exception as exc:
                    error = translate(exc, "publish", self.description, publishing=True)
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
                                f"SNS refused a message on {self.description}: "
                                f"{failure.get('Code')}: {failure.get('Message')}"
                            )
                        )
        finally:
            self._flights -= 1

    # -- subscribing -----------------------------------------------------------------------------

    async def subscribe(self, spec: SubscriptionSpec) -> Subscription:
        self._check()
        if spec.start == "earliest" and spec.pattern.startswith(DLQ_PREFIX) and self.archive_url:
            sub = _SQSSubscription(
                self, spec, self.archive_url, None, owned=False, only=matcher(spec.pattern)
            )
            self._subscriptions.add(sub)
            return sub
        if spec.start == "earliest" and spec.group is None:
            raise UnsupportedError(
                "SQS cannot replay: a new fan-out subscriber only sees messages published after it"
            )
        try:
            return await self._subscribe(spec)
        except SQSError as exc:
            if not isinstance(exc.__cause__, Exception) or error_code(exc.__cause__) != "NotFound":
                raise
        # The namespace's topic is gone (deleted, or an emulator restarted): declare it again.
        try:
            await self._declare_namespace()
        except Exception as exc:
            raise translate(exc, "declare namespace", self.description) from None
        return await self._subscribe(spec)

    async def _subscribe(self, spec: SubscriptionSpec) -> Subscription:
        config = self.config
        max_receive = (spec.max_attempts or 5) + config.redrive_margin
        attributes = {
            "VisibilityTimeout": str(max(1, math.ceil(spec.ack_wait))),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": self.dlq_arn, "maxReceiveCount": str(max_receive)}
            ),
        }
        if config.fifo:
            attributes["FifoQueue"] = "true"
        try:
            if spec.group is None:
                name = fanout_queue_name(config.namespace, config.fifo)
                attributes["MessageRetentionPeriod"] = str(config.fanout_retention)
                url, arn = await self._ensure_queue(name, attributes, create_only=True)
                try:
                    sub_arn: str = await self._subscribe_queue(arn, spec.pattern, url)
                except BaseException:
                    await self._drop_queue(url, None)
                    raise
                owned = True
            else:
                name = group_queue_name(config.namespace, spec.group, spec.pattern, config.fifo)
                async with self._group_lock:
                    url, arn = await self._ensure_queue(name, attributes)
                    found = await self._find_subscription(arn)
                    if found is None:
                        found = await self._subscribe_queue(arn, spec.pattern, url)
                    sub_arn = found
                owned = False
        except ConfigurationError:
            raise
        except Exception as exc:
            error = translate(exc, f"subscribe to {spec.pattern!r}", self.description)
            raise error from exc if error_code(exc) == "NotFound" else None
        sub = _SQSSubscription(self, spec, url, sub_arn, owned)
        self._subscriptions.add(sub)
        return sub

    async def _ensure_queue(
        self, name: str, attributes: dict[str, str], *, create_only: bool = False
    ) -> tuple[str, str]:
        """The URL and ARN of queue ``name``, created when missing (an existing queue keeps its
        attributes, so that members with other settings do not fight over them)."""
        url = None
        if not create_only:
            try:
                url = (await self.sqs.get_queue_url(QueueName=name))["QueueUrl"]
            except Exception as exc:
                if error_code(exc) not in _NOT_FOUND:
                    raise
        if url is None:
            url = (await self.sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
        got = await self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return url, got["Attributes"]["QueueArn"]

    async def _subscribe_queue(self, queue_arn: str, pattern: str, queue_url: str) -> str:
        """Let the SNS topic deliver into the queue (queue policy), then subscribe it raw and
        filtered."""
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": self.topic_arn}},
                }
            ],
        }
        await self.sqs.set_queue_attributes(
            QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)}
        )
        response = await self.sns.subscribe(
            TopicArn=self.topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true", "FilterPolicy": filter_policy(pattern)},
            ReturnSubscriptionArn=True,
        )
        return str(response["SubscriptionArn"])

    async def _find_subscription(self, queue_arn: str) -> str | None:
        kwargs: dict[str, Any] = {"TopicArn": self.topic_arn}
        while True:
            page = await self.sns.list_subscriptions_by_topic(**kwargs)
            for sub in page.get("Subscriptions", []):
                if sub.get("Endpoint") == queue_arn:
                    return str(sub["SubscriptionArn"])
            token = page.get("NextToken")
            if not token:
                return None
            kwargs["NextToken"] = token

    async def _drop_queue(self, queue_url: str, subscription_arn: str | None) -> None:
        """Unsubscribe and delete a queue; never raises (a dead endpoint must not break close)."""
        if self.sqs is None:
            return
        if subscription_arn:
            try:
                await self.sns.unsubscribe(SubscriptionArn=subscription_arn)
            except Exception as exc:
                log.warning("unsubscribing %s failed: %s", queue_url, exc)
        try:
            await self.sqs.delete_queue(QueueUrl=queue_url)
        except Exception as exc:
            log.warning("deleting queue %s failed: %s", queue_url, exc)

    async def delete_group(self, pattern: str, group: str) -> None:
        """Remove a consumer group's queue and its SNS subscription, with the messages waiting in
        it. Groups are durable, so nothing else removes them."""
        self._check()
        name = group_queue_name(self.config.namespace, group, pattern, self.config.fifo)
        try:
            url = (await self.sqs.get_queue_url(QueueName=name))["QueueUrl"]
        except Exception as exc:
            if error_code(exc) in _NOT_FOUND:
                return
            raise translate(exc, "delete group", self.description) from None
        got = await self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        await self._drop_queue(url, await self._find_subscription(got["Attributes"]["QueueArn"]))

    async def delete_namespace(self) -> int:
        """Delete everything of this namespace: its group, fan-out, DLQ and archive queues (with
        their messages) and its SNS topic with its subscriptions; returns how many queues went.
        For tests and teardown; other buses on the namespace stop working."""
        self._check()
        config = self.config
        ns, suffix = config.namespace, ".fifo" if config.fifo else ""
        exact = {dlq_queue_name(ns, config.fifo), archive_queue_name(ns, config.fifo)}
        urls: list[str] = []
        kwargs: dict[str, Any] = {"QueueNamePrefix": f"{ns}-", "MaxResults": 1000}
        while True:
            page = await self.sqs.list_queues(**kwargs)
            for url in page.get("QueueUrls", []):
                name = url.rsplit("/", 1)[-1]
                mine = name.startswith((f"{ns}-g-", f"{ns}-f-")) and name.endswith(suffix)
                if mine or name in exact:
                    urls.append(url)
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        for sub in list(self._subscriptions):
            await sub.aclose()
        listing: dict[str, Any] = {"TopicArn": self.topic_arn}
        while True:
            page = await self.sns.list_subscriptions_by_topic(**listing)
            for sub_info in page.get("Subscriptions", []):
                try:
                    await self.sns.unsubscribe(SubscriptionArn=sub_info["SubscriptionArn"])
                except Exception as exc:  # go on deleting the rest; the topic's deletion follows
                    log.warning("unsubscribing %s failed: %r", sub_info["SubscriptionArn"], exc)
            if not page.get("NextToken"):
                break
            listing["NextToken"] = page["NextToken"]
        for url in urls:
            try:
                await self.sqs.delete_queue(QueueUrl=url)
            except Exception as exc:  # go on deleting the rest
                log.warning("deleting queue %s failed: %r", url, exc)
        await self.sns.delete_topic(TopicArn=self.topic_arn)
        return len(urls)

    # -- the native dead-letter queue ------------------------------------------------------------

    async def sweep_dead_letters(self, idle: float = 1.0) -> list[Message]:
        """Take every message SQS's redrive policy moved to the namespace's DLQ queue (its
        consumers kept dying before settling it) and return them, deleted from that queue.

        Reading stops after ``idle`` seconds without a new one.
        """
        self._check()
        found: list[Message] = []
        deadline = time.monotonic() + idle
        while time.monotonic() < deadline:
            response = await self.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=_BATCH,
                WaitTimeSeconds=min(self.config.wait, max(0, math.ceil(idle))),
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            records = response.get("Messages") or []
            if not records:
                continue
            deadline = time.monotonic() + idle
            for record in records:
                count = int(record.get("Attributes", {}).get("ApproximateReceiveCount", 1))
                message, _ = from_sqs(record, "redriven.foreign", count)
                found.append(message)
            await self.sqs.delete_message_batch(
                QueueUrl=self.dlq_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r["ReceiptHandle"]}
                    for i, r in enumerate(records)
                ],
            )
        return found


SQSBroker = SQSTransport
"""The seed's name for the SQS transport."""
