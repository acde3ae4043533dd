"""The Redis tests against a Redis Cluster (issue 19): opt-in, ``nox -s cluster``.

Not part of the default run: a cluster is six servers, and the failover test kills a master under
load. ``redis_cluster_url`` (session) is ``AMB_REDIS_CLUSTER_URL`` when set (an existing cluster:
``redis+cluster://host:port,...``), else the URL of a cluster of three masters with a replica each
that this session starts (:mod:`.cluster`). ``namespace`` gives each test keys of its own, deleted
afterwards on every master (never FLUSHALL).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.redis.conftest import _asyncio_only

from .cluster import start_redis_cluster

__all__ = ["_asyncio_only", "namespace", "redis_cluster_url"]


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    url = os.environ.get("AMB_REDIS_CLUSTER_URL")
    if url:
        yield url
        return
    cluster = start_redis_cluster()
    try:
        yield cluster.url()
    finally:
        cluster.close()


@pytest.fixture
def namespace(redis_cluster_url: str) -> Iterator[str]:
    """A key namespace of this test alone; its keys are deleted afterwards on every master."""
    name = f"ambtest{uuid.uuid4().hex[:10]}"
    yield name
    from redis.cluster import ClusterNode, RedisCluster

    from amb_redis.config import RedisConfig

    config = RedisConfig.parse(redis_cluster_url)
    client = RedisCluster.from_url(
        config.url, startup_nodes=[ClusterNode(h, p) for h, p in config.seeds[1:]]
    )
    try:
        for node in client.get_primaries():
            for key in client.scan_iter(match=f"{name}:*", count=1000, target_nodes=node):
                client.delete(key)
    finally:
        client.close()
