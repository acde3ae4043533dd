"""URLs and options: parsing, precedence, errors, and no password in any text."""

from __future__ import annotations

import logging
import uuid

import pytest

from amb_core import MessageBus
from amb_core.errors import ConfigurationError, InvalidOptionError, UnknownOptionError
from amb_core.testing.conformance import wait_until
from amb_redis import RedisBroker, RedisConfig, RedisTransport

pytestmark = pytest.mark.redis


def test_defaults_are_streams() -> None:
    config = RedisConfig.parse("redis://localhost:6379")
    assert (config.mode, config.namespace, config.maxlen) == ("streams", "amb", 100_000)
    assert RedisTransport().capabilities.consumer_groups


def test_only_pubsub_mode_overlaps_replies() -> None:
    """Pub/sub is at most once and every awaited PUBLISH is a round trip: a one-at-a-time
    responder sends replies while it handles on. Streams acks after the reply, so it waits."""
    assert RedisTransport("redis://h/0?mode=pubsub").replies_overlap
    assert not RedisTransport("redis://h/0").replies_overlap


def test_amb_options_leave_the_url_and_kwargs_win() -> None:
    config = RedisConfig.parse(
        "redis://h:1/2?mode=pubsub&maxlen=5&socket_timeout=3&namespace=x", namespace="y"
    )
    assert (config.mode, config.maxlen, config.namespace) == ("pubsub", 5, "y")
    assert config.url == "redis://h:1/2?socket_timeout=3"
    assert config.key("a.b") == "y:a.b" and config.registry == "y::topics"
    assert (config.scan, RedisConfig.parse("redis://h?scan=0").scan) == (1000, 0)


def test_glob_escapes_all_but_the_wildcards() -> None:
    config = RedisConfig.parse("redis://h", namespace="n*[x]?")
    assert config.glob("a.*.>") == "n\\*\\[x\\]\\?:a.*.*"


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("http://h", {}),
        ("redis://h?mode=kafka", {}),
        ("redis://h?maxlen=many", {}),
        ("redis://h", {"namespace": "a:b"}),
        ("redis://h", {"discover": 0}),
        ("redis://h?scan=-1", {}),
        ("redis://h", {"colour": "blue"}),
    ],
)
def test_bad_options_raise_configuration_error(url: str, options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RedisConfig.parse(url, **options)


def test_password_is_redacted_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport = RedisTransport("rediss://user:hunter2@example.com:6380/0?mode=pubsub")
    texts = [transport.description, repr(transport), repr(transport.config)]
    assert all("hunter2" not in t and "***" in t for t in texts), texts
    assert "rediss://" in transport.description
    with pytest.raises(ConfigurationError) as caught:
        RedisConfig.parse("http://user:hunter2@h")
    assert "hunter2" not in str(caught.value)


def test_from_url_and_the_seed_spelling() -> None:
    bus = MessageBus.from_url("redis://localhost:6379?mode=pubsub")
    assert isinstance(bus.transport, RedisTransport)
    assert bus.transport.config.mode == "pubsub"
    assert RedisBroker is RedisTransport
    assert isinstance(MessageBus(RedisBroker(url="redis://localhost:6379")).transport, RedisBroker)
    for url in ("rediss://localhost:6380", "unix:///tmp/redis.sock"):
        assert isinstance(MessageBus.from_url(url).transport, RedisTransport)


def test_capabilities_by_mode_are_what_each_mode_declares() -> None:
    """``amb backends`` reads capabilities_by_mode: it must say what a transport of each mode has."""
    from amb_redis import RedisTransport

    for mode, caps in RedisTransport.capabilities_by_mode.items():
        assert RedisTransport(f"redis://127.0.0.1:6379?mode={mode}").capabilities == caps


@pytest.mark.parametrize(
    ("url", "options"),
    [("redis://localhost:6379?bogus=1", {}), ("redis://localhost:6379", {"bogus": 1})],
)
def test_unknown_option_is_named_before_anything_connects(
    url: str, options: dict[str, object]
) -> None:
    # It used to reach redis-py and fail at connect as "RedisConnectError ... unexpected keyword
    # argument 'bogus'": now the URL is refused when it is read, naming the option.
    with pytest.raises(UnknownOptionError, match="unknown Redis option 'bogus'"):
        MessageBus.from_url(url, **options)


@pytest.mark.parametrize(
    ("url", "options", "named"),
    [
        ("redis://h?maxlen=many", {}, "maxlen='many'"),
        ("redis://h", {"block": "soon"}, "block='soon'"),
        ("redis://h?mode=kafka", {}, "mode='kafka'"),
    ],
)
def test_bad_option_value_is_named(url: str, options: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidOptionError, match=named):
        MessageBus.from_url(url, **options)


@pytest.mark.anyio
async def test_redis_py_options_still_reach_the_driver(redis_url: str) -> None:
    url = (
        f"{redis_url}?socket_timeout=5&health_check_interval=30&namespace=opt{uuid.uuid4().hex[:8]}"
    )
    transport = RedisTransport(url)
    assert "socket_timeout=5" in transport.config.url and "namespace" not in transport.config.url
    async with MessageBus(transport) as bus:
        got: list[object] = []
        await bus.subscribe("opts.ok", got.append)
        await bus.publish("opts.ok", 1)
        await wait_until(lambda: got != [], 5, "a message over a URL with redis-py options")
