"""URL parsing, options, redaction and discovery; no broker needed."""

from __future__ import annotations

import pytest

from amb_core import MessageBus
from amb_core.errors import ConfigurationError, InvalidOptionError, UnknownOptionError
from amb_kafka import KafkaBroker, KafkaConfig, KafkaTransport
from amb_kafka.subscription import pattern_regex


def test_url_options_and_sasl() -> None:
    config = KafkaConfig.from_url(
        "kafka://bob:p%40ss@h1:9092,h2:9092?partitions=3&session_timeout_ms=7000"
        "&socket.keepalive.enable=true"
    )
    assert config.bootstrap == "h1:9092,h2:9092"
    assert (config.partitions, config.session_timeout_ms) == (3, 7000)
    assert (config.username, config.password) == ("bob", "p@ss")
    common = config.common()
    assert common["sasl.username"] == "bob" and common["sasl.password"] == "p@ss"
    assert common["security.protocol"] == "SASL_PLAINTEXT"
    assert common["socket.keepalive.enable"] == "true"
    assert config.consumer("g")["session.timeout.ms"] == 7000
    assert config.consumer("g")["enable.auto.commit"] is False


def test_password_never_shown() -> None:
    transport = KafkaTransport("kafka://bob:topsecret@h:9092?sasl_password=alsosecret")
    for text in (repr(transport), transport.description, repr(transport.config)):
        assert "topsecret" not in text and "alsosecret" not in text


@pytest.mark.parametrize(
    "url",
    ["redis://h:1", "kafka://", "kafka://h:9092?partitions=many", "kafka://h:9092?nonsense=1"],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        KafkaConfig.from_url(url)


def test_seed_spelling_and_scheme_discovery() -> None:
    assert KafkaBroker is KafkaTransport
    assert isinstance(KafkaBroker(url="kafka://h:9092").config, KafkaConfig)
    bus = MessageBus.from_url("kafka://h:9092")
    assert isinstance(bus.transport, KafkaTransport)


def test_pattern_regex() -> None:
    assert pattern_regex("a.b") is None
    assert pattern_regex("a.*") == r"^a\.[^.]+$"
    assert pattern_regex("a.>") == r"^a\..+$"
    assert pattern_regex("a-b.*.end") == r"^a\-b\.[^.]+\.end$"


@pytest.mark.parametrize(
    ("url", "options"),
    [("kafka://127.0.0.1:9092?bogus=1", {}), ("kafka://127.0.0.1:9092", {"bogus": 1})],
)
def test_unknown_option_is_named(url: str, options: dict[str, object]) -> None:
    with pytest.raises(UnknownOptionError, match="unknown Kafka option 'bogus'"):
        MessageBus.from_url(url, **options)


@pytest.mark.parametrize(
    ("url", "options", "named"),
    [
        ("kafka://h:9092?partitions=many", {}, "partitions='many'"),
        ("kafka://h:9092", {"publish_timeout": "soon"}, "publish_timeout='soon'"),
        ("kafka://h:9092", {"sasl_password": 0.5, "linger_ms": 0.5}, "linger_ms=0.5"),
    ],
)
def test_bad_option_value_is_named(url: str, options: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidOptionError, match=named):
        MessageBus.from_url(url, **options)


def test_dotted_librdkafka_options_pass_through() -> None:
    config = KafkaConfig.from_url("kafka://h:9092?socket.keepalive.enable=true", linger_ms=7)
    assert config.common()["socket.keepalive.enable"] == "true"
    assert config.producer()["linger.ms"] == 7
