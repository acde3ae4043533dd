"""The SQS transport: pub/sub the AWS way, SNS fan-out into SQS queues.

Publishing sends to the namespace's one SNS topic, with the AMB topic in the ``amb-topic`` message
attribute; every subscription is an SQS queue subscribed to that topic with raw delivery and a
filter policy on ``amb-topic``. This module holds the transport's life (clients, connection state,
closing) and hands the rest to one module per concept:

- :mod:`._namespace`: the topic and queues (declaring, subscribing queues, the DLQ, deleting);
- :mod:`._publisher`: publishes batched into ``PublishBatch`` calls;
- :mod:`._subscription`: a queue's receive loops, its deliveries and how they are settled;
- :mod:`._liveness`: the connection state, learnt from every request;
- :mod:`.codec`, :mod:`.naming`, :mod:`.config`, :mod:`.errors`: the envelope, the names, the URL,
  the typed errors.

The bus dead-letters failing messages itself after ``max_attempts``; SQS's redrive policy (after
``max_attempts + redrive_margin`` receives) only catches messages whose consumers kept dying
mid-handler (see :meth:`SQSTransport.sweep_dead_letters`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

import attrs

from amb_core.aio import cancel_and_wait
from amb_core.deadletter import DLQ_PREFIX
from amb_core.errors import NotConnectedError, UnsupportedError
from amb_core.message import Message
from amb_core.topics import matcher
from amb_core.transport import (
    Capabilities,
    ConnectionState,
    Subscription,
    SubscriptionSpec,
    Transport,
)

from ._liveness import Liveness
from ._namespace import Namespace
from ._publisher import Publisher
from ._subscription import SQSSubscription
from .codec import MAX_SIZE
from .config import SQSConfig, parse_url
from .errors import SQSError, error_code, translate

__all__ = ["SQSBroker", "SQSTransport"]

log = logging.getLogger("amb.sqs")


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
        self._ns = Namespace(self.config)
        self._publisher = Publisher(self._ns)
        self._stack: contextlib.AsyncExitStack | None = None
        self._closed = False
        self._subscriptions: set[SQSSubscription] = set()
        self._liveness: Liveness | None = None

    @property
    def description(self) -> str:
        return self.config.description

    # -- what tools and tests read: the clients and the namespace's names --------------------------

    @property
    def sqs(self) -> Any:
        """The aiobotocore SQS client (``None`` while not connected)."""
        return self._ns.sqs

    @property
    def sns(self) -> Any:
        """The aiobotocore SNS client (``None`` while not connected)."""
        return self._ns.sns

    @property
    def topic_arn(self) -> str:
        """The namespace's SNS topic."""
        return self._ns.topic_arn

    @property
    def dlq_url(self) -> str:
        """The namespace's native dead-letter queue (SQS's redrive target)."""
        return self._ns.dlq_url

    @property
    def dlq_arn(self) -> str:
        """The native dead-letter queue's ARN."""
        return self._ns.dlq_arn

    @property
    def archive_url(self) -> str:
        """The dead-letter archive queue (``""`` with ``dlq_archive=false``)."""
        return self._ns.archive_url

    # -- lifecycle -------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._ns.sqs is not None:
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
        ns = self._ns
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
                setattr(ns, service, client)
            bound = config.connect_timeout * 3 + 1
            await _within(ns.declare(), bound)
        except BaseException as exc:
            ns.sqs = ns.sns = None
            await _close_clients(stack, self.description)
            if isinstance(exc, Exception):
                raise translate(exc, "connect", self.description) from None
            raise
        self._stack = stack
        self._closed = False
        self._set_state(ConnectionState.CONNECTED)  # the declarations just got through
        self._liveness = Liveness(self._set_state, ns.probe, self.description)
        for client in (ns.sqs, ns.sns):
            self._liveness.watch(client)

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
        self._publisher.fail_pending(lambda: NotConnectedError(f"{self.description} closed"))
        stack, self._stack = self._stack, None
        if stack is not None:
            await _close_clients(stack, self.description)
        self._ns.sqs = self._ns.sns = None

    def _check(self) -> None:
        if self._ns.sqs is None or self._closed:
            raise NotConnectedError(f"{self.description} is not connected")

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, message: Message) -> None:
        self._check()
        await self._publisher.publish(message)

    async def publish_many(self, messages: Iterable[Message]) -> None:
        self._check()
        await self._publisher.publish_many(messages)

    # -- subscribing -----------------------------------------------------------------------------

    async def subscribe(self, spec: SubscriptionSpec) -> Subscription:
        self._check()
        ns = self._ns
        if spec.start == "earliest" and spec.pattern.startswith(DLQ_PREFIX) and ns.archive_url:
            only = matcher(spec.pattern)
            return self._track(
                SQSSubscription(ns, spec, ns.archive_url, None, False, only, forget=self._forget)
            )
        if spec.start == "earliest" and spec.group is None:
            raise UnsupportedError(
                "SQS cannot replay: a new fan-out subscriber only sees messages published after it"
            )
        try:
            queue = await ns.open_queue(spec)
        except SQSError as exc:
            if not isinstance(exc.__cause__, Exception) or error_code(exc.__cause__) != "NotFound":
                raise
            # The namespace's topic is gone (deleted, or an emulator restarted): declare it again.
            try:
                await ns.declare()
            except Exception as declaring:
                raise translate(declaring, "declare namespace", self.description) from None
            queue = await ns.open_queue(spec)
        url, subscription_arn, owned = queue
        return self._track(
            SQSSubscription(ns, spec, url, subscription_arn, owned, forget=self._forget)
        )

    def _track(self, sub: SQSSubscription) -> SQSSubscription:
        self._subscriptions.add(sub)
        return sub

    def _forget(self, sub: SQSSubscription) -> None:
        self._subscriptions.discard(sub)

    # -- administration --------------------------------------------------------------------------

    async def delete_group(self, pattern: str, group: str) -> None:
        """Remove a consumer group's queue and its SNS subscription, with the messages waiting in
        it. Groups are durable, so nothing else removes them."""
        self._check()
        await self._ns.delete_group(pattern, group)

    async def delete_namespace(self) -> int:
        """Delete everything of this namespace: its group, fan-out, DLQ and archive queues (with
        their messages) and its SNS topic with its subscriptions; returns how many queues went.
        For tests and teardown; other buses on the namespace stop working."""
        self._check()
        urls = await self._ns.own_queues()
        for sub in list(self._subscriptions):
            await sub.aclose()
        await self._ns.delete(urls)
        return len(urls)

    async def sweep_dead_letters(self, idle: float = 1.0) -> list[Message]:
        """Take every message SQS's redrive policy moved to the namespace's DLQ queue (its
        consumers kept dying before settling it) and return them, deleted from that queue.

        Reading stops after ``idle`` seconds without a new one.
        """
        self._check()
        return await self._ns.sweep(idle)


SQSBroker = SQSTransport
"""The seed's name for the SQS transport."""
