"""The ``sqs://`` URL: options, validation, discovery, and no credential ever taken or shown."""

from __future__ import annotations

import json

import pytest

from amb_core import MessageBus
from amb_core.errors import ConfigurationError, InvalidOptionError, UnknownOptionError
from amb_core.message import Message
from amb_sqs import SQSBroker, SQSTransport, parse_url
from amb_sqs.codec import ATTR_HEADERS, from_sqs, to_sns
from amb_sqs.naming import fallback_topic, filter_policy, group_queue_name

pytestmark = pytest.mark.sqs


def test_url_options_and_defaults() -> None:
    config = parse_url(
        "sqs://eu-west-1?endpoint=http://127.0.0.1:5000&namespace=agents&fifo=true&wait=2"
        "&pollers=4&redrive_margin=5&fanout_retention=600&profile=dev"
    )
    assert (config.region, config.endpoint, config.namespace) == (
        "eu-west-1",
        "http://127.0.0.1:5000",
        "agents",
    )
    assert (config.fifo, config.wait, config.pollers, config.redrive_margin) == (True, 2, 4, 5)
    assert (config.fanout_retention, config.profile) == (600, "dev")
    default = parse_url("sqs://")
    assert (default.region, default.namespace, default.fifo, default.wait) == (
        None,
        "amb",
        False,
        5,
    )
    assert parse_url("sqs://?region=us-east-2").region == "us-east-2"
    assert parse_url("sqs://?region=x", wait=0).wait == 0, "keyword options win"


@pytest.mark.parametrize(
    "url",
    [
        "sqs://?wait=21",
        "sqs://?fifo=maybe",
        "sqs://?pollers=0",
        "sqs://?namespace=has space",
        "sqs://?namespace=" + "n" * 41,
        "sqs://?endpoint=ftp://host",
        "sqs://?bogus=1",
        "redis://localhost",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "sqs://AKIAEXAMPLE:hunter2secret@us-east-1",
        "sqs://?region=us-east-1&aws_secret_access_key=hunter2secret",
        "sqs://?aws_access_key_id=AKIAEXAMPLE&aws_secret_access_key=hunter2secret",
    ],
)
def test_credentials_in_urls_are_refused_and_redacted(url: str) -> None:
    with pytest.raises(ConfigurationError, match="AWS chain") as caught:
        SQSTransport(url)
    assert "hunter2secret" not in str(caught.value)


def test_description_and_repr_are_redacted() -> None:
    transport = SQSBroker("sqs://?region=us-east-1&endpoint=http://user:pw0rd@proxy:8080")
    assert "pw0rd" not in repr(transport) and "pw0rd" not in transport.description
    assert "proxy:8080" in transport.description


def test_seed_spelling() -> None:
    broker = SQSBroker(url="sqs://?region=us-east-1&namespace=seed")
    assert isinstance(MessageBus(broker).transport, SQSTransport)
    assert broker.config.namespace == "seed"


def test_discovered_through_the_entry_point() -> None:
    bus = MessageBus.from_url("sqs://?region=us-east-1&namespace=x", retry=None)
    assert isinstance(bus.transport, SQSTransport)
    caps = bus.transport.capabilities
    assert caps.consumer_groups and caps.at_least_once and caps.native_delay
    assert caps.native_dead_letter and caps.persistent and caps.headers
    assert not caps.ordered and not caps.replay and caps.max_message_size == 262_144
    assert caps.dead_letter_replay, "dead letters are archived: bus.dead_letters / amb dlq work"
    assert SQSTransport("sqs://?fifo=1").capabilities.ordered
    assert SQSTransport.capabilities == caps, "the class declares standard mode (amb backends)"


def test_filter_policies() -> None:
    assert json.loads(filter_policy("a.b")) == {"amb-topic": ["a.b"]}
    assert json.loads(filter_policy("a.b.*")) == {"amb-topic": [{"prefix": "a.b."}]}
    assert json.loads(filter_policy("a.*.c")) == {"amb-topic": [{"prefix": "a."}]}
    assert json.loads(filter_policy(">")) == {"amb-topic": [{"exists": True}]}
    assert fallback_topic("a.*.c") == "a.foreign.c" and fallback_topic("a.b") == "a.b"


def test_group_queue_names_fit_sqs_limits() -> None:
    long = group_queue_name("n" * 40, "g/" * 100, "a.>", fifo=True)
    assert len(long) <= 80 and long.endswith(".fifo")
    assert group_queue_name("ns", "g", "a.b", False) != group_queue_name("ns", "g", "a.c", False)


def record(text: str, attributes: dict[str, dict[str, str]]) -> dict[str, object]:
    return {"Body": text, "MessageAttributes": attributes}


def test_headers_ride_natively_when_they_fit_and_packed_when_not() -> None:
    small = Message(topic="t.a", payload={"x": 1}, headers={"trace": "1"})
    text, attributes, _ = to_sns(small)
    assert ATTR_HEADERS not in attributes and attributes["trace"]["StringValue"] == "1"
    assert from_sqs(record(text, attributes), "t.a", 1)[0].headers == {"trace": "1"}
    many = {f"h{i}": str(i) for i in range(12)} | {"bad name!": "v", "empty": ""}
    big = Message(topic="t.a", payload=b"\x00\xff", headers=many)
    text, attributes, _ = to_sns(big)
    assert set(attributes) == {"amb-topic", ATTR_HEADERS}
    back, error = from_sqs(record(text, attributes), "t.a", 2)
    assert error is None
    assert (back.payload, dict(back.headers), back.attempt, back.id) == (
        b"\x00\xff",
        many,
        2,
        big.id,
    )


def test_bad_packed_headers_are_undecodable() -> None:
    _, error = from_sqs(record("{}", {ATTR_HEADERS: {"StringValue": "[1]"}}), "t.a", 1)
    assert error is not None


@pytest.mark.parametrize(
    ("url", "options"),
    [("sqs://us-east-1?bogus=1", {}), ("sqs://us-east-1", {"bogus": 1})],
)
def test_unknown_option_is_named(url: str, options: dict[str, object]) -> None:
    with pytest.raises(UnknownOptionError, match="unknown SQS option 'bogus'"):
        MessageBus.from_url(url, **options)


@pytest.mark.parametrize(
    ("url", "options", "named"),
    [
        ("sqs://us-east-1?wait=long", {}, "wait='long'"),
        ("sqs://us-east-1", {"fifo": "maybe"}, "fifo='maybe'"),
        ("sqs://us-east-1", {"wait": 21}, "wait=21 is not between 0 and 20"),
    ],
)
def test_bad_option_value_is_named(url: str, options: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidOptionError, match=named):
        MessageBus.from_url(url, **options)
