"""The topic grammar and the wire envelope, case by case."""

from __future__ import annotations

import re
import uuid

import pytest

from amb_core import DecodeError, InvalidTopicError, Message
from amb_core.errors import ConfigurationError
from amb_core.topics import literal_prefix, matches, to_regex, validate_pattern, validate_topic
from amb_core.wire import decode, decode_packed, encode, pack, unpack


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.b.c", False),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.*", "a", False),
        ("a.>", "a.b", True),
        ("a.>", "a.b.c.d", True),
        ("a.>", "a", False),
        ("*.b.*", "x.b.y", True),
        ("*.b.*", "x.c.y", False),
        (">", "anything.at.all", True),
        ("a.*.c", "a.bb.c", True),
        ("a.*.c", "a.b.x.c", False),
    ],
)
def test_matching(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected
    assert (re.match(to_regex(pattern), topic) is not None) is expected


@pytest.mark.parametrize(
    "bad", ["", "a..b", ".a", "a.", "a b", "a/b", "ä.b", "a.*", "a.>", "x" * 250]
)
def test_invalid_topics(bad: str) -> None:
    with pytest.raises(InvalidTopicError):
        validate_topic(bad)


@pytest.mark.parametrize("bad", ["", "a.>.b", "a.b*", "a..*", "*.", ">.a"])
def test_invalid_patterns(bad: str) -> None:
    with pytest.raises(InvalidTopicError):
        validate_pattern(bad)


@pytest.mark.parametrize("bad", [42, None, ["a", "b"], {"topic": "a"}])
def test_non_string_topic_is_a_typed_error(bad: object) -> None:
    """Unhashable ones too (a list used to raise the dictionary's bare TypeError)."""
    with pytest.raises(InvalidTopicError, match="must be a str"):
        validate_topic(bad)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_publishing_to_a_list_is_a_typed_error() -> None:
    from amb_core import MessageBus

    async with MessageBus() as bus:
        with pytest.raises(InvalidTopicError, match="must be a str"):
            await bus.publish(["orders", "created"], 1)  # type: ignore[arg-type]
        with pytest.raises(InvalidTopicError, match="must be a str"):
            await bus.publish_many(["orders"], [1])  # type: ignore[arg-type]


def test_literal_prefix() -> None:
    assert literal_prefix("a.b.*") == "a.b."
    assert literal_prefix("a.>") == "a."
    assert literal_prefix("a.b") == "a.b"


def test_encode_decode_round_trip() -> None:
    message = Message(
        "orders.created",
        {"n": 1, "s": "é"},
        {"trace": "x"},
        correlation_id="c",
        reply_to="r.x",
        sender="agent",
        ttl=5.5,
        priority=3,
        key="k",
    )
    body, headers = encode(message)
    assert body == '{"n":1,"s":"é"}'.encode()
    assert "content-type" not in headers
    again = decode(body, headers, "ignored.by.amb-topic", attempt=2)
    assert again.evolve(attempt=1) == message
    assert again.attempt == 2


def test_bytes_payload_is_octet_stream() -> None:
    body, headers = encode(Message("t", b"\x00\x01"))
    assert body == b"\x00\x01" and headers["content-type"] == "application/octet-stream"
    assert decode(body, headers, "t").payload == b"\x00\x01"


def test_foreign_plain_json_decodes_with_defaults() -> None:
    message = decode(b'{"plain": true}', None, "from.broker")
    assert message.payload == {"plain": True}
    assert message.topic == "from.broker"
    assert message.id and message.timestamp > 0 and message.headers == {}


def test_json_bodies_in_any_unicode_encoding_decode() -> None:
    for encoding in ("utf-8", "utf-8-sig", "utf-16", "utf-32"):
        body = '{"name": "Zoë", "n": 1}'.encode(encoding)
        assert decode(body, None, "t").payload == {"name": "Zoë", "n": 1}, encoding
    assert decode(memoryview(b'["view"]'), None, "t").payload == ["view"]


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"\xffnot json", {}),
        (b"{", {}),
        (b"1", {"amb-ttl": "soon"}),
        (b"\xff", {"content-type": "text/plain"}),
    ],
)
def test_undecodable_input_is_a_decode_error(body: bytes, headers: dict[str, str]) -> None:
    with pytest.raises(DecodeError):
        decode(body, headers, "t")


def test_pack_unpack_and_foreign_bytes() -> None:
    message = Message("a.b", [1, 2], {"h": "v"})
    assert decode_packed(pack(message), "a.b") == message
    assert unpack(b'{"x": 1}') == (b'{"x": 1}', {})
    for broken in (b"AMB1{no end", b"AMB1[1]\nbody", b'AMB1{"a": 1}\nbody'):
        with pytest.raises(DecodeError):
            unpack(broken)


def test_unserialisable_payload_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="JSON"):
        encode(Message("t", {"when": object()}))


def test_user_headers_survive_even_with_reserved_looking_names() -> None:
    body, headers = encode(Message("t", 1, {"amb-dlq-reason": "expired", "x": "y"}))
    assert decode(body, headers, "t").headers == {"amb-dlq-reason": "expired", "x": "y"}


def test_one_off_topics_are_checked_but_not_remembered() -> None:
    from amb_core import topics

    inbox = f"_INBOX.{uuid.uuid4().hex}.7"
    assert topics.validate_topic(inbox, remember=False) == inbox
    assert inbox not in topics.KNOWN_TOPICS, "a reply inbox would crowd out the real topics"
    with pytest.raises(InvalidTopicError):
        topics.validate_topic("_INBOX.bad..token", remember=False)
    topics.validate_topic(inbox)
    assert inbox in topics.KNOWN_TOPICS
