"""The NATS tests against a three-node cluster with JetStream (issue 19): opt-in, ``nox -s cluster``.

Not part of the default run (the ``backend`` sessions run ``tests/nats`` only): a cluster is three
servers, and the failover test kills one under load. ``nats_cluster`` (session) is the cluster the
conformance classes share, ``nats_url`` its three-server URL; ``stream_prefix`` deletes the streams
of each test afterwards, as in tests/nats. Under ``CI=true`` a missing nats-server fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.nats.cluster import NatsCluster, start_nats_cluster
from tests.nats.conftest import _asyncio_only, stream_prefix

__all__ = ["_asyncio_only", "nats_cluster", "nats_url", "stream_prefix"]


@pytest.fixture(scope="session")
def nats_cluster() -> Iterator[NatsCluster]:
    """A formed three-node cluster the session's tests share (none of them kills its nodes)."""
    cluster = start_nats_cluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def nats_url(nats_cluster: NatsCluster) -> str:
    """``nats://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c``: every node, as an application lists them."""
    return nats_cluster.url()
