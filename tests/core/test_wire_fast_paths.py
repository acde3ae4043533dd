"""The receive and send hot paths of the wire format: ``decode_pairs`` (headers as the driver hands
them over) and the one-entry timestamp memo that batches share."""

from __future__ import annotations

import random
import time

import pytest

from amb_core import DecodeError, Message
from amb_core.wire import decode, decode_lines, decode_pairs, encode, format_timestamp


def as_pairs(headers: dict[str, str]) -> list[tuple[str, bytes | None]]:
    return [(name, value.encode()) for name, value in headers.items()]


def test_decode_pairs_reads_what_encode_writes() -> None:
    fields = ("a.b", {"n": 1}, {"trace": "x", "span": "é"}, "id-1", "c", "r.x", 1764050000.25)
    message = Message(*fields, "agent", 5.5, 1, 3, "k")
    body, headers = encode(message)
    again = decode_pairs(body, as_pairs(headers), "elsewhere", 4)
    assert again == message.evolve(attempt=4)
    assert again == decode(body, headers, "elsewhere", attempt=4)


def test_decode_pairs_takes_text_values_too_and_fills_defaults() -> None:
    message = decode_pairs(b"[1]", [("amb-sender", "a"), ("x", None)], "broker.topic")
    assert message.topic == "broker.topic" and message.payload == [1]
    assert message.sender == "a" and message.headers == {"x": ""}
    assert message.id and message.timestamp > 0 and message.attempt == 1
    bare = decode_pairs(b"null", None, "t")
    assert bare.payload is None and bare.headers == {} and bare.priority == 0


def test_a_record_without_headers_reads_as_one_with_empty_headers() -> None:
    """The header-less shortcut (a foreign producer's plain JSON) gives what the general path
    gives: every field but the fresh id and the arrival time is equal, and bad JSON is typed."""
    for pairs in (None, []):
        bare = decode_pairs(b'{"a": [1]}', pairs, "t.x", 3)
        general = decode_pairs(b'{"a": [1]}', [("user", b"v")], "t.x", 3)
        assert bare == general.evolve(headers={}, id=bare.id, timestamp=bare.timestamp)
        assert bare.id != general.id and abs(bare.timestamp - time.time()) < 5
    with pytest.raises(DecodeError, match="JSON"):
        decode_pairs(b"{", None, "t")


def test_a_header_named_twice_keeps_its_last_value() -> None:
    pairs = [("amb-id", b"first"), ("u", b"1"), ("amb-id", b"second"), ("u", b"2")]
    message = decode_pairs(b"1", pairs, "t")
    assert message.id == "second" and message.headers == {"u": "2"}


def test_undecodable_header_bytes_read_as_replacement_characters() -> None:
    message = decode_pairs(b"1", [("note", b"caf\xe9"), ("amb-sender", b"\xffa")], "t")
    assert message.headers == {"note": "caf\ufffd"} and message.sender == "\ufffda"


@pytest.mark.parametrize(
    ("name", "value"),
    [("amb-ts", b"soon"), ("amb-ts", b""), ("amb-ttl", b"5s"), ("amb-priority", b"1.5")],
)
def test_a_bad_number_names_its_header(name: str, value: bytes) -> None:
    with pytest.raises(DecodeError, match=name):
        decode_pairs(b"1", [(name, value)], "t")


def test_a_bad_body_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="JSON"):
        decode_pairs(b"{", [("amb-id", b"i")], "t")
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_pairs(b"\xff", [("content-type", b"text/plain")], "t")


def test_timestamps_read_back_exactly() -> None:
    rng = random.Random(7)
    stamps = [time.time(), 0.0, -3.25, 1e12, 1764050000.25]
    stamps += [rng.uniform(0, 9e9) for _ in range(5_000)]
    for stamp in stamps:
        assert float(format_timestamp(stamp)) == stamp
    message = Message("t", 1)
    body, headers = encode(message)
    assert decode(body, headers, "t").timestamp == message.timestamp


def test_the_timestamp_memo_never_answers_for_another_value() -> None:
    first, second = 1764050000.5, 1764050000.75
    assert format_timestamp(first) == "1764050000.5"
    assert format_timestamp(second) == "1764050000.75"
    assert format_timestamp(first) == "1764050000.5"
    assert format_timestamp(float("1764050000.5")) == "1764050000.5"  # equal, another object


def test_a_batch_shares_one_formatted_timestamp() -> None:
    stamp = time.time()
    texts = [encode(Message("t", i, timestamp=stamp))[1]["amb-ts"] for i in range(3)]
    assert texts == [repr(stamp)] * 3 and texts[0] is texts[1] is texts[2]


def as_lines(headers: dict[str, str]) -> str:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"


def test_decode_lines_reads_what_encode_writes() -> None:
    fields = ("a.b", {"n": 1}, {"trace": "x", "span": "é"}, "id-1", "c", "r.x", 1764050000.25)
    message = Message(*fields, "agent", 5.5, 1, 3, "k")
    body, headers = encode(message)
    again = decode_lines(body, as_lines(headers), "elsewhere", 4)
    assert again == message.evolve(attempt=4)
    assert again == decode(body, headers, "elsewhere", attempt=4)
    bare = decode_lines(b"[1]", "", "broker.topic")
    assert bare.topic == "broker.topic" and bare.payload == [1] and bare.headers == {}
    assert bare.id and bare.timestamp > 0 and bare.priority == 0 and bare.reply_to is None


def test_decode_lines_reads_lines_as_a_header_parser_does() -> None:
    """Values and misplaced names are stripped, malformed lines skipped, the last of a name
    kept; the default reply subject gives way to a header that names one."""
    text = (
        "x-a:  1 \r\nno colon here\r\n : empty name\r\nbad name: v\r\nn\u00e9: v\r\n"
        " amb-sender : s1\r\nx-a: 2\r\nx-b:\r\n\r\n"
    )
    message = decode_lines(b"{}", text, "t", reply_to="native.inbox")
    assert message.headers == {"x-a": "2", "x-b": ""}
    assert message.sender == "s1" and message.reply_to == "native.inbox"
    named = decode_lines(b"{}", "amb-reply-to: mine\r\n", "t", reply_to="native.inbox")
    assert named.reply_to == "mine"


def test_decode_lines_types_bad_input() -> None:
    with pytest.raises(DecodeError, match="amb-ttl"):
        decode_lines(b"{}", "amb-ttl: soon\r\n", "t")
    with pytest.raises(DecodeError, match="JSON"):
        decode_lines(b"{", "", "t")
