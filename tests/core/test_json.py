"""amb_core._json: the hot-path JSON codec gives what the standard library gives, errors included."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from amb_core._json import dumps, loads

VALUES: list[Any] = [
    {"agent": "planner", "task": "analyze", "data": "x" * 60},
    {"nested": {"list": [1, 2.5, -3e10, True, False, None], "text": "naïve ✓ 𝄞"}},
    [],
    {},
    'plain string with "quotes" and \\ and \n newline',
    "",
    0,
    -1.5,
    10**30,
    None,
    True,
    [{"a": [{"b": [{}]}]}],
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_matches_the_standard_encoder(value: Any) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert dumps(value) == expected
    assert loads(expected.encode()) == value


@pytest.mark.parametrize(
    "body",
    [
        b'  {"a": 1}  ',  # whitespace around: the full decoder
        b"\n[1, 2]\n",
        '\ufeff{"a": 1}'.encode(),  # a UTF-8 BOM: json.loads accepts it
        '{"a": "ü"}'.encode("utf-16"),  # another Unicode encoding: json.loads detects it
        b"NaN",
        b'"text"',
    ],
)
def test_loads_accepts_what_json_loads_accepts(body: bytes) -> None:
    expected = json.loads(body)
    got = loads(body)
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected
    assert repr(loads(bytearray(body))) == repr(loads(memoryview(body))) == repr(got)


@pytest.mark.parametrize(
    "body", [b"", b"   ", b"{", b'{"a": 1} trailing', b'{"a": 1}{"b": 2}', b"\xff\xfe\xfa", b"nul"]
)
def test_loads_refuses_what_json_loads_refuses(body: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(body)
    with pytest.raises(ValueError):
        loads(body)


def test_dumps_refuses_circular_structures_with_the_standard_error() -> None:
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular reference"):
        dumps(circular)


def test_dumps_refuses_what_json_cannot_represent() -> None:
    with pytest.raises(TypeError):
        dumps({"when": object()})
    with pytest.raises(TypeError):
        dumps({("tuple", "key"): 1})


@pytest.mark.parametrize(
    "body",
    [
        b"\x00" + b"a" * 100_000,  # json.loads guesses UTF-16-BE and fails at the end
        b'\x00{"a": 1}',
        b'{"a": 1}\x00',
    ],
)
def test_loads_reports_the_fault_in_valid_utf8_not_an_encoding_guess(body: bytes) -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        loads(body)
    assert caught.value.pos == body.index(b"\x00"), "the error points at the NUL byte"


def test_loads_reports_bytes_that_are_no_unicode_as_not_utf8() -> None:
    with pytest.raises(UnicodeDecodeError) as caught:
        loads(b"\x00\xff\xfe\x00\xff")  # json.loads guesses UTF-16-BE: "truncated data"
    assert caught.value.encoding == "utf-8" and caught.value.start == 1


def test_loads_still_reads_utf16_without_a_bom() -> None:
    assert loads('{"a": 1}'.encode("utf-16-le")) == json.loads('{"a": 1}'.encode("utf-16-le"))
