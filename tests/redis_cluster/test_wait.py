"""``wait_replicas`` on the cluster: a publish returns once a replica has the message, and fails
typed, within ``wait_timeout``, when fewer replicas than asked can have it."""

from __future__ import annotations

import anyio
import pytest
import redis

from amb_core import MessageBus
from amb_redis import RedisPublishError, RedisTransport
from amb_redis.config import RedisConfig

pytestmark = [pytest.mark.redis, pytest.mark.cluster, pytest.mark.anyio]


def replica_xlen(url: str, key: str) -> int:
    """XLEN of ``key`` read on the replica of the key's master (READONLY: a replica answers)."""
    from redis.cluster import ClusterNode, RedisCluster

    config = RedisConfig.parse(url)
    cluster = RedisCluster.from_url(
        config.url, startup_nodes=[ClusterNode(h, p) for h, p in config.seeds[1:]]
    )
    try:
        master = cluster.get_node_from_key(key)
    finally:
        cluster.close()
    primary = redis.Redis(host=master.host, port=master.port)
    try:
        info = primary.info("replication")  # slave0: {"ip": ..., "port": ...}
    finally:
        primary.close()
    replica = info.get("slave0")
    assert isinstance(replica, dict), f"no replica of {master.name}: {info}"
    client = redis.Redis(host=str(replica["ip"]), port=int(replica["port"]))
    try:
        client.execute_command("READONLY")
        return int(client.xlen(key))
    finally:
        client.close()


async def test_a_publish_with_wait_is_on_the_replica_when_it_returns(
    redis_cluster_url: str, namespace: str
) -> None:
    transport = RedisTransport(redis_cluster_url, namespace=namespace, wait_replicas=1)
    async with MessageBus(transport) as bus:
        for n in range(20):
            await bus.publish("wait.ok", n)
            assert replica_xlen(redis_cluster_url, transport.config.key("wait.ok")) == n + 1


async def test_more_replicas_than_there_are_fails_typed_within_wait_timeout(
    redis_cluster_url: str, namespace: str
) -> None:
    """Each master has one replica: asking for two cannot be met."""
    transport = RedisTransport(
        redis_cluster_url, namespace=namespace, wait_replicas=2, wait_timeout=0.3
    )
    async with MessageBus(transport) as bus:
        with anyio.fail_after(10), pytest.raises(RedisPublishError, match="1 of 2 replicas"):
            await bus.publish("wait.short", 1)
