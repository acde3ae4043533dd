"""``redis+cluster://`` URLs: seeds, key layout, options and bad input (no cluster needed; the
cluster itself is tested in tests/redis_cluster, ``nox -s cluster``)."""

from __future__ import annotations

import pytest

from amb_core.errors import ConfigurationError
from amb_redis import RedisTransport
from amb_redis.config import RedisConfig


def test_seeds_and_the_url_redis_py_gets() -> None:
    config = RedisConfig.parse("redis+cluster://u:s3cret@a:7000,b:7001,[::1]:7002,c?mode=pubsub")
    assert config.cluster and config.mode == "pubsub" and config.pubsub == "sharded"
    assert config.seeds == (("a", 7000), ("b", 7001), ("::1", 7002), ("c", 6379))
    assert config.url == "redis://u:s3cret@a:7000"
    assert config.node_url("::1", 7002) == "redis://u:s3cret@[::1]:7002"
    assert "s3cret" not in config.description and "s3cret" not in repr(config)
    assert "a:7000,b:7001,[::1]:7002,c:6379" in config.description


def test_tls_and_driver_options_pass_through() -> None:
    config = RedisConfig.parse("rediss+cluster://a:1,b:2?socket_timeout=3&wait_replicas=1")
    assert config.url == "rediss://a:1?socket_timeout=3" and config.wait_replicas == 1


def test_keys_carry_a_hash_tag_only_on_a_cluster() -> None:
    cluster = RedisConfig.parse("redis+cluster://a:1", namespace="ns")
    single = RedisConfig.parse("redis://a:1", namespace="ns")
    assert (
        cluster.key("orders.eu") == "ns:{orders.eu}" and single.key("orders.eu") == "ns:orders.eu"
    )
    assert cluster.glob("orders.*") == "ns:{orders.*}" and single.glob("orders.*") == "ns:orders.*"
    assert cluster.topic_of(b"ns:{orders.eu}") == b"orders.eu"
    assert single.topic_of(b"ns:orders.eu") == b"orders.eu"
    assert cluster.registry == single.registry == "ns::topics"


def test_the_replication_gap_is_declared() -> None:
    assert RedisTransport("redis+cluster://a:1").replication_gap
    assert not RedisTransport("redis+cluster://a:1?wait_replicas=1").replication_gap
    assert not RedisTransport("redis://a:1").replication_gap
    for mode in ("streams", "pubsub"):  # and in the capabilities, where applications look
        assert RedisTransport(f"redis+cluster://a:1?mode={mode}").capabilities.failover_loss
        waits = RedisTransport(f"redis+cluster://a:1?mode={mode}&wait_replicas=1")
        assert not waits.capabilities.failover_loss
        assert not RedisTransport(f"redis://a:1?mode={mode}").capabilities.failover_loss


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://a:1,,b:2",
        "redis+cluster://a:notaport",
        "redis+cluster://a:70000",
        "redis+cluster://:1",
        "redis+cluster://a:1/3",
        "redis+cluster://a:1?pubsub=fanout",
        "redis+cluster://a:1?wait_replicas=-1",
        "redis://a:1?pubsub=classic",
    ],
)
def test_bad_cluster_urls_raise_typed_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisConfig.parse(url)


def test_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisConfig.parse("redis+cluster://u:s3cret@a:1,b:x")
    assert "s3cret" not in str(caught.value)


@pytest.mark.anyio
async def test_a_cluster_url_on_a_single_redis_fails_typed(redis_url: str) -> None:
    """Nothing is written: the cluster client's first CLUSTER SLOTS is refused."""
    from urllib.parse import urlsplit

    from amb_redis import RedisConnectError

    parts = urlsplit(redis_url)
    if parts.scheme != "redis" or parts.password:
        pytest.skip("needs a plain redis://host:port Redis")
    transport = RedisTransport(f"redis+cluster://{parts.hostname}:{parts.port or 6379}")
    with pytest.raises(RedisConnectError, match="Cluster mode is not enabled"):
        await transport.connect()


@pytest.mark.anyio
async def test_an_unreachable_cluster_fails_typed_without_the_password() -> None:
    from amb_core.testing.servers import free_port
    from amb_redis import RedisConnectError

    url = f"redis+cluster://u:s3cret@127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    with pytest.raises(RedisConnectError) as caught:
        await RedisTransport(url, connect_timeout=2).connect()
    assert "s3cret" not in str(caught.value)
