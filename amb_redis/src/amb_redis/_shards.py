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

When a master dies, its hub's reader keeps losing its connection; the first loss starts a rehoming
task that, every 0.1 to 0.5 s, lets redis-py refresh its slot map (a keyed ``EXISTS`` on a channel)
and, once another node serves a channel's slot (the promoted replica), moves that channel's
subscribers to the hub of that node (:meth:`~amb_redis.pubsub.PubSubHub.adopt`). Messages published
in between are lost (at most once); the subscriptions themselves carry on.

In classic mode every node hears every PUBLISH (the cluster bus broadcasts it, to replicas as
well), so any live node can serve the subscriptions: when the classic hub's node stops answering,
a rehoming task moves every channel and pattern to the first other node of the cluster's map that
answers a PING, and later classic subscriptions go there too. A node that answers again before
that keeps its subscriptions (its hub reconnects by itself).

redis-py's own ``ClusterPubSub`` reads the masters' connections one after the other, each with a
timeout, which adds up to that timeout of latency per message; a reader per master has none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from amb_core.backoff import Backoff
from amb_core.topics import is_pattern
from amb_core.transport import SubscriptionSpec

from ._tasks import cancel_and_wait
from .config import RedisConfig
from .errors import RedisUnsupportedError
from .pubsub import PubSubHub, PubSubSubscription

__all__ = ["ClusterPubSub"]

log = logging.getLogger("amb.redis")


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
        self.rehoming: dict[str, asyncio.Task[None]] = {}  # node name -> its rehoming task
        self.classic_node: Any = None  # where classic subscriptions live (after a rehoming)

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
        if self.config.sharded:
            node = self.client.get_node_from_key(self.config.key(spec.pattern))
        else:
            node = self.classic_node or self.client.get_default_node()
        return await self._hub(node).add(spec)

    def _hub(self, node: Any) -> PubSubHub:
        """The hub of ``node``, created at its first subscription."""
        import redis.asyncio as aioredis

        entry = self.hubs.get(node.name)
        if entry is None:
            node_client = aioredis.Redis.from_url(
                self.config.node_url(node.host, node.port),
                socket_connect_timeout=self.config.connect_timeout,
                protocol=2,
            )

            def lost(exc: BaseException, name: str = node.name) -> None:
                self._node_lost(name, exc)

            hub = PubSubHub(node_client, self.config, lost, self.back, sharded=self.config.sharded)
            entry = self.hubs[node.name] = (node_client, hub)
        return entry[1]

    def _node_lost(self, name: str, exc: BaseException) -> None:
        self.lost(exc)
        if name not in self.rehoming:
            rehome = self._rehome if self.config.sharded else self._rehome_classic
            self.rehoming[name] = asyncio.get_running_loop().create_task(rehome(name))

    async def _rehome_classic(self, name: str) -> None:
        """Move every subscription of the classic hub on node ``name`` to another live node,
        unless ``name`` answers again first."""
        import redis.asyncio as aioredis

        backoff = Backoff(initial=0.1, cap=0.5)
        try:
            while name in self.hubs:
                await asyncio.sleep(backoff.next())
                node_client, hub = self.hubs[name]
                if await _answers(node_client):
                    return  # back: its hub reconnects and re-subscribes by itself
                try:  # a keyed command: on failure redis-py refreshes its map of the cluster
                    await self.client.execute_command("EXISTS", self.config.key("_rehome"))
                except Exception as exc:
                    log.debug("refreshing the cluster map: %r", exc)
                for node in self.client.get_nodes():
                    if node.name == name:
                        continue
                    probe = aioredis.Redis.from_url(
                        self.config.node_url(node.host, node.port),
                        socket_connect_timeout=min(self.config.connect_timeout, 1.0),
                        protocol=2,
                    )
                    try:
                        alive = await _answers(probe)
                    finally:
                        await probe.aclose()
                    if alive:
                        break
                else:
                    continue  # no other node answers yet: try again
                for channel in list(hub.routes):
                    await self._move(name, hub, channel, node)
                self.classic_node = node
                await self._retire_if_empty(name)
        finally:
            self.rehoming.pop(name, None)

    async def _rehome(self, name: str) -> None:
        """Move the channels of the hub of master ``name`` to the nodes that serve their slots
        now, until it has none left (then it is closed) or its node answers again."""
        backoff = Backoff(initial=0.1, cap=0.5)  # each round lost is pub/sub traffic lost
        try:
            while name in self.hubs:
                await asyncio.sleep(backoff.next())
                node_client, hub = self.hubs[name]
                channels = list(hub.routes)
                try:
                    if channels:  # a keyed command: redis-py refreshes its slot map on failure
                        await self.client.execute_command("EXISTS", channels[0])
                    back = await node_client.ping()
                    if back and all(
                        self.client.get_node_from_key(c).name == name for c in channels
                    ):
                        return  # the node is back and still serves its channels
                except Exception as exc:
                    log.debug("rehoming pub/sub of %s: %r", name, exc)
                for channel in channels:
                    node = self.client.get_node_from_key(channel)
                    if node.name != name:
                        await self._move(name, hub, channel, node)
                await self._retire_if_empty(name)
        finally:
            self.rehoming.pop(name, None)

    async def _move(self, name: str, hub: PubSubHub, channel: bytes, node: Any) -> None:
        """Hand ``channel``'s subscribers from ``hub`` (on node ``name``) to ``node``'s hub; on
        failure they stay in ``hub``, for the next round."""
        subs = hub.routes.pop(channel, [])
        try:
            await self._hub(node).adopt(channel, subs)
        except Exception as exc:
            hub.routes[channel] = subs
            log.debug("moving %r to %s failed: %r", channel, node.name, exc)
        else:
            log.info("pub/sub %r moved from %s to %s", channel, name, node.name)

    async def _retire_if_empty(self, name: str) -> None:
        """Close the hub of node ``name`` and its client once no subscription is left in it."""
        node_client, hub = self.hubs[name]
        if not hub.routes:
            del self.hubs[name]
            await hub.aclose()
            await node_client.aclose()

    async def aclose(self) -> None:
        rehoming, self.rehoming = list(self.rehoming.values()), {}
        for task in rehoming:
            await cancel_and_wait(task, "rehoming Redis pub/sub")
        hubs, self.hubs = list(self.hubs.values()), {}
        for node_client, hub in hubs:
            await hub.aclose()
            await node_client.aclose()


async def _answers(client: Any) -> bool:
    """Whether the node behind ``client`` answers a PING (within its connect timeout)."""
    try:
        return bool(await asyncio.wait_for(client.ping(), 1.0))
    except Exception:
        return False
