"""The redis-py ``RedisCluster`` client of a ``redis+cluster://`` URL, and the per-master helpers
that a cluster needs where one Redis needs none.

redis-py's cluster client routes each keyed command to the master of the key's slot, follows
``MOVED``/``ASK`` and refreshes its slot map after a failover (the replica promoted in a dead
master's place), so the transport's publishes, group commands and reads need no cluster logic of
their own. What the client cannot route are commands without a key that must reach *every*
master, which AMB needs twice: ``SCAN`` (a wildcard subscription finds streams on all masters,
:mod:`._discovery`) and ``TIME`` (any one master's clock will do).
"""

from __future__ import annotations

from typing import Any

from .config import RedisConfig

__all__ = ["cluster_client", "primaries", "server_time"]


def cluster_client(config: RedisConfig) -> Any:
    """A ``redis.asyncio.cluster.RedisCluster`` on the URL's seeds (not connected yet)."""
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    return RedisCluster.from_url(
        config.url,
        startup_nodes=[ClusterNode(host, port) for host, port in config.seeds[1:]],
        socket_connect_timeout=config.connect_timeout,
        max_connections=1000,
        protocol=2,  # the same replies as the single-node client
    )


def primaries(client: Any) -> list[Any]:
    """The masters as the client's slot map has them now."""
    nodes: list[Any] = client.get_primaries()
    return nodes


async def server_time(client: Any) -> tuple[int, int]:
    """``TIME`` of one master: ``(seconds, microseconds)``."""
    node = client.get_default_node()
    reply = await client.execute_command("TIME", target_nodes=node)
    if isinstance(reply, dict):  # some redis-py versions key a reply by node name
        reply = next(iter(reply.values()))
    seconds, micros = reply
    return int(seconds), int(micros)
