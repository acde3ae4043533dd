"""Pub/sub mode on a Redis Cluster: sharded pub/sub (Redis 7), one connection per master.

Classic ``PUBLISH`` on a cluster is broadcast to every node over the cluster bus, so pub/sub
traffic does not scale with the masters. Sharded pub/sub does: ``SPUBLISH`` goes to the master of
the channel's slot only, and ``SSUBSCRIBE`` must be sent to that master. Each topic's channel is
hash-tagged like its stream (``<namespace>:{<topic>}``), so subscriptions spread over the masters;
this hub keeps one :class:`~amb_redis.pubsub.PubSubHub` (one connection, one reader) per master
and sends each exact subscription to the hub of its channel's master.

Wildcards raise :class:`~amb_redis.errors.RedisUnsupportedError`: sharded pub/sub has no patterns,
and serving them with classic ``PSUBSCRIBE`` would require every publish to be broadcast
(``PUBLISH``) as well as sharded, which is exactly the cost sharded pub/sub exists to avoid. A
deployment that needs wildcard pub/sub (``dlq.>``, ``orders.*``) on a cluster chooses
``pubsub=classic``: PUBLISH (the cluster broadcasts it to every node) and SUBSCRIBE/PSUBSCRIBE on
one node, the cluster's default node, through one hub, exactly as on a single Redis; or uses
Streams mode, where wildcards work on a cluster.

redis-py's own ``ClusterPubSub`` reads the masters' connections one after the other, each with a
timeout, which adds up to that timeout of latency per message; a reader per master has none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amb_core.topics import is_pattern
from amb_core.transport import SubscriptionSpec

from .config import RedisConfig
from .errors import RedisUnsupportedError
from .pubsub import PubSubHub, PubSubSubscription

__all__ = ["ClusterPubSub"]


class ClusterPubSub:
    """The pub/sub subscriptions of one transport on a cluster: one hub per master (sharded), or
    one hub on one node (classic)."""

    def __init__(
        self,
        client: Any,
        config: RedisConfig,
        lost: Callable[[BaseException], None] = lambda exc: None,
        back: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self.config = config
        self.lost = lost
        self.back = back
        self.hubs: dict[str, tuple[Any, PubSubHub]] = {}  # node name -> (its client, its hub)
        self.task = None  # each hub stops its own reader (aclose)

    async def add(self, spec: SubscriptionSpec) -> PubSubSubscription:
        """SSUBSCRIBE on the master of the topic's slot (classic: (P)SUBSCRIBE on the default
        node); returns once it confirmed.

        :raises RedisUnsupportedError: for a wildcard pattern.
        """
        if self.config.sharded and is_pattern(spec.pattern):
            raise RedisUnsupportedError(
                f"wildcard {spec.pattern!r} in pub/sub mode on a Redis Cluster: sharded pub/sub "
                "has no patterns (use pubsub=classic or mode=streams, or subscribe to exact topics)"
            )
        import redis.asyncio as aioredis

        if self.config.sharded:
            node = self.client.get_node_from_key(self.config.key(spec.pattern))
        else:
            node = self.client.get_default_node()
        entry = self.hubs.get(node.name)
        if entry is None:
            node_client = aioredis.Redis.from_url(
                self.config.node_url(node.host, node.port),
                socket_connect_timeout=self.config.connect_timeout,
                protocol=2,
            )
            hub = PubSubHub(
                node_client, self.config, self.lost, self.back, sharded=self.config.sharded
            )
            entry = self.hubs[node.name] = (node_client, hub)
        return await entry[1].add(spec)

    async def aclose(self) -> None:
        hubs, self.hubs = list(self.hubs.values()), {}
        for node_client, hub in hubs:
            await hub.aclose()
            await node_client.aclose()
