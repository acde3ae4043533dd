"""The Redis transport: one class, two modes (see :mod:`.streams` and :mod:`.pubsub`).

Streams is the default because AMB's users are agents handing each other work: a task published
while its worker restarts must wait for it, a worker that crashes mid-task must not lose the task,
and a group of workers must share the load. Only Streams gives that (consumer groups, acks,
redelivery, retention). Pub/sub is for events where the newest value is all that matters and
latency is everything: choose it with ``?mode=pubsub`` or ``mode="pubsub"``.

On a Redis Cluster (``redis+cluster://``, :mod:`._cluster`) the same two modes run over redis-py's
``RedisCluster``: Streams with one hash-tagged stream per topic, pub/sub as sharded pub/sub
(SSUBSCRIBE/SPUBLISH) for exact topics and a typed error for wildcards, or, with ``pubsub=classic``,
broadcast PUBLISH and (P)SUBSCRIBE on one node (:mod:`._shards`).

In Streams mode the request/reply inbox (``_INBOX.*`` topics) still rides on pub/sub: a reply is
worthless once its requester gave up, and a stream per bus would be left behind in Redis forever.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from typing import Any, ClassVar

import attrs

from amb_core.errors import ConfigurationError, NotConnectedError
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
from amb_core.wire import encode, pack

from ._cluster import cluster_client
from ._health import Heartbeat
from ._shards import ClusterPubSub
from ._tasks import bounded, cancel_and_wait
from ._wait import Wait
from .config import RedisConfig
from .errors import RedisAuthenticationError, RedisConnectError, is_auth_error
from .pubsub import PubSubHub
from .streams import BODY, StreamSubscription, entry_fields

__all__ = ["PUBSUB_CAPABILITIES", "STREAMS_CAPABILITIES", "RedisBroker", "RedisTransport"]

log = logging.getLogger("amb.redis")

STREAMS_CAPABILITIES = Capabilities(
    persistent=True,
    consumer_groups=True,
    at_least_once=True,
    ordered=True,
    replay=True,
    headers=True,
    delivery_count=True,
)
PUBSUB_CAPABILITIES = Capabilities(ordered=True, native_wildcards=True)
_EPHEMERAL = INBOX_PREFIX + "."
_KNOWN_LIMIT = 65536


class RedisTransport(Transport):
    """AMB over Redis (redis-py's asyncio client).

    :param url: ``redis://[user:password@]host[:port][/db][?mode=streams|pubsub&...]``;
        ``rediss://`` for TLS, ``unix:///path`` for a socket, ``redis+cluster://host:port,...``
        for a Redis Cluster. See :class:`~amb_redis.config.RedisConfig` for the options; keyword
        arguments win over the URL's.
    """

    scheme = "redis"
    event_loops = frozenset({"asyncio"})
    capabilities = STREAMS_CAPABILITIES  # the default mode's; an instance in pub/sub mode overrides
    capabilities_by_mode: ClassVar[dict[str, Capabilities]] = {
        "streams": STREAMS_CAPABILITIES,
        "pubsub": PUBSUB_CAPABILITIES,
    }

    def __init__(self, url: str = "redis://localhost:6379", **options: Any) -> None:
        self.config = RedisConfig.parse(url, **options)
        capabilities = (
            STREAMS_CAPABILITIES if self.config.mode == "streams" else PUBSUB_CAPABILITIES
        )
        if self.replication_gap:  # declared: see Capabilities.failover_loss
            capabilities = attrs.evolve(capabilities, failover_loss=True)
        self.capabilities = capabilities
        # An awaited PUBLISH costs a round trip: a one-at-a-time responder's replies overlap
        # and leave in shared pipelines (Transport.replies_overlap; at-most-once mode only).
        self.replies_overlap = self.config.mode == "pubsub"
        self.id = uuid.uuid4().hex[:12]
        self.client: Any = None
        self._pipeliner: Any = None
        self._hub: PubSubHub | ClusterPubSub | None = None
        self._known: set[str] = set()
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        self._warned_groups = False
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def description(self) -> str:
        return f"RedisTransport {self.config.description}"

    @property
    def replication_gap(self) -> bool:
        """True when a failover can lose publishes that returned: on a Redis Cluster (or any
        Redis whose replica may be promoted) without ``wait_replicas``, since Redis replicates
        asynchronously and a master acknowledges a write before any replica has it. ``False``
        with ``wait_replicas`` >= 1 (a publish returns once that many replicas have it) and on a
        single Redis without replicas, whose own persistence settings decide instead."""
        return self.config.cluster and self.config.wait_replicas == 0

    def _scrub(self, text: str) -> str:
        return redact_secrets(text, self.config.password)

    # -- lifecycle --------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and PING within ``connect_timeout``.

        :raises RedisConnectError: refused, unknown host, TLS failure or timeout.
        :raises RedisAuthenticationError: bad user name or password.
        """
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        from ._pipeline import Pipeliner

        if self.client is not None and not self._closed:
            return
        try:
            if self.config.cluster:
                client = cluster_client(self.config)
            else:
                client = aioredis.Redis.from_url(
                    self.config.url,
                    socket_connect_timeout=self.config.connect_timeout,
                    retry=Retry(NoBackoff(), 1),
                    max_connections=1000,
                    protocol=2,  # the same replies on redis-py 5 to 8; no per-message push handling
                )
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                self._scrub(f"bad Redis URL {self.description}: {exc}")
            ) from None
        try:
            with bounded(self.config.connect_timeout):
                if self.config.cluster:
                    await client.initialize()
                await client.ping()
        except Exception as exc:
            await client.aclose()
            if is_auth_error(exc):
                raise RedisAuthenticationError(
                    self._scrub(f"Redis refused the credentials for {self.description}: {exc}")
                ) from None
            text = str(exc) or type(exc).__name__
            raise RedisConnectError(
                self._scrub(f"cannot reach {self.description}: {text}")
            ) from None
        self.client = client
        self._pipeliner = Pipeliner(
            client,
            self.config.batch,
            self.config.publish_timeout,
            self._scrub,
            self._connection_lost,
            self._connection_back,
            wait=self._wait(),
            node_of=client.get_node_from_key if self.config.cluster else None,
        )
        self._closed = False
        self._set_state(ConnectionState.CONNECTED)
        beat = Heartbeat(
            client,
            self.config.heartbeat,
            self.config.connect_timeout,
            self._connection_lost,
            self._connection_back,
        )
        self._heartbeat = asyncio.get_running_loop().create_task(beat.run())

    def _wait(self) -> Wait | None:
        """The WAIT after writes, when ``wait_replicas`` asks for one."""
        if self.config.wait_replicas <= 0:
            return None
        return Wait(self.config.wait_replicas, max(1, int(self.config.wait_timeout * 1000)))

    # -- connection state -------------------------------------------------------------------------

    def _connection_lost(self, exc: BaseException) -> None:
        """A command met a lost connection: ``RECONNECTING`` until Redis answers again."""
        if self.state is ConnectionState.CONNECTED and not self._closed:
            log.warning("Redis connection lost (%s); reconnecting", self._scrub(repr(exc)))
            self._set_state(ConnectionState.RECONNECTING)

    def _connection_back(self) -> None:
        """Redis answered after the connection was lost: ``CONNECTED``."""
        if self.state is ConnectionState.RECONNECTING and not self._closed:
            log.info("Redis connection is back (%s)", self.description)
            self._set_state(ConnectionState.CONNECTED)

    async def aclose(self) -> None:
        """Close the subscriptions and connections. Idempotent; quiet when Redis is gone.

        The background tasks (heartbeat, pub/sub reader, pipeline drain) are all told to stop
        before the first wait, so a caller cancelled meanwhile (a timeout around ``aclose()``)
        leaves none of them running; calling ``aclose()`` again finishes what was left.
        """
        self._closed = True
        self._set_state(ConnectionState.CLOSED)
        if self.client is None:
            return
        heartbeat = self._heartbeat
        reader = self._hub.task if self._hub is not None else None
        for task in (heartbeat, reader, self._pipeliner._task):
            if task is not None:
                task.cancel()
        if heartbeat is not None:
            await cancel_and_wait(heartbeat, "the Redis heartbeat")
            self._heartbeat = None
        for sub in list(self._subscriptions):
            try:
                await sub.aclose()
            except Exception as exc:
                log.debug("closing a subscription: %r", exc)
        self._subscriptions.clear()
        if self._hub is not None:
            await self._hub.aclose()
            self._hub = None
        await self._pipeliner.aclose()
        client, self.client = self.client, None
        try:
            await client.aclose()
        except Exception as exc:
            log.debug("closing the Redis client: %r", exc)

    def _check(self) -> None:
        if self._closed or self.client is None:
            raise NotConnectedError(f"{self.description} is not connected")

    # -- publish ----------------------------------------------------------------------------------

    async def publish(self, message: Message) -> None:
        """XADD (Streams) or PUBLISH (pub/sub); concurrent publishes share pipelines.

        :raises RedisUnavailableError: (a ``BrokerUnavailableError``) when Redis stayed unreachable
            for ``publish_timeout`` (the transport is then ``RECONNECTING``).
        :raises RedisPublishError: when Redis refused it.
        :raises ConfigurationError: for a payload the wire format cannot carry, or a header
            named ``body`` in Streams mode.
        :raises NotConnectedError: before connect or after close.
        """
        if self._closed or self.client is None:
            self._check()
        topic = message.topic
        config = self.config
        if config.mode == "pubsub" or topic.startswith(_EPHEMERAL):
            command = "SPUBLISH" if config.sharded else "PUBLISH"
            await self._pipeliner.call(command, config.key(topic), pack(message))
            return
        body, headers = encode(message)
        if BODY in headers:
            raise ConfigurationError(f"a header may not be named {BODY!r} on Redis Streams")
        if topic not in self._known:
            await self._pipeliner.call("SADD", config.registry, topic)
            if len(self._known) >= _KNOWN_LIMIT:  # unique topics must not grow memory
                self._known.clear()
            self._known.add(topic)
        key = config.key(topic)
        if config.maxlen > 0:
            await self._pipeliner.call(
                "XADD", key, "MAXLEN", "~", config.maxlen, "*", *entry_fields(body, headers)
            )
        else:
            await self._pipeliner.call("XADD", key, "*", *entry_fields(body, headers))

    async def publish_many(self, messages: Iterable[Message]) -> None:
        """All at once, so that the pipeliner sends them in as few pipelines as its limit allows
        (in order: each is queued before the next starts). The first goes alone, registering its
        topic, as ``publish`` does.

        :raises RedisPublishError: the first failure, once every message was tried.
        """
        batch = list(messages)
        if not batch:
            return
        await self.publish(batch[0])
        results = await asyncio.gather(
            *(self.publish(m) for m in batch[1:]), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def publish_raw(
        self, topic: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Write bytes as another program would (XADD ``body`` + headers, or a bare PUBLISH)."""
        self._check()
        if self.config.mode == "pubsub" or topic.startswith(_EPHEMERAL):
            command = "SPUBLISH" if self.config.sharded else "PUBLISH"
            await self.client.execute_command(command, self.config.key(topic), body)
            return
        await self.client.sadd(self.config.registry, topic)
        await self.client.execute_command(
            "XADD", self.config.key(topic), "*", *entry_fields(body, headers or {})
        )

    # -- subscribe --------------------------------------------------------------------------------

    async def subscribe(self, spec: SubscriptionSpec) -> Subscription:
        """Open a subscription; when this returns, later publishes are delivered.

        In pub/sub mode a ``group`` cannot be honoured (Redis pub/sub has no groups): the
        subscription is a fan-out one and a warning is logged once.

        :raises TransportError: when Redis refuses.
        :raises NotConnectedError: before connect or after close.
        """
        self._check()
        if self.config.mode == "pubsub" or spec.pattern.startswith(_EPHEMERAL):
            if spec.group is not None and not self._warned_groups:
                self._warned_groups = True
                log.warning(
                    "Redis pub/sub has no consumer groups: group %r on %r receives every message "
                    "(use mode=streams for groups)",
                    spec.group,
                    spec.pattern,
                )
            if self._hub is None:
                hub_class = ClusterPubSub if self.config.cluster else PubSubHub
                self._hub = hub_class(
                    self.client, self.config, self._connection_lost, self._connection_back
                )
            return await self._hub.add(spec)
        sub = StreamSubscription(self, spec)
        try:
            await sub.open()
        except Exception as exc:
            from amb_core.errors import TransportError

            raise TransportError(
                self._scrub(f"subscribing to {spec.pattern!r} failed: {exc!r}")
            ) from None
        self._subscriptions.add(sub)
        return sub


RedisBroker = RedisTransport
"""The seed's name: ``MessageBus(RedisBroker(url="redis://localhost:6379"))``."""
