"""JSON for the hot path: the standard library's C encoder and scanner, minus their per-call setup.

``json.dumps`` builds a fresh C encoder (and a circular-reference memo) on every call, and
``json.loads`` detects the bytes' encoding and runs two whitespace regexes around the C scanner. On a
~100-byte payload that setup is half the cost. Here the encoder is built once without the memo (a
circular structure then ends in ``RecursionError``, which falls back to the checking encoder for its
usual ``ValueError``), and the scanner runs directly on UTF-8 text; anything that does not fit the
fast path (leading or trailing whitespace, another encoding, bad JSON) takes the standard functions,
so results are theirs. Errors are theirs too, except where ``json.loads`` would report its encoding
guess rather than the fault: for bytes that are valid UTF-8 the UTF-8 reading's error is raised, and
for bytes that are no Unicode encoding at all, the UTF-8 codec's (a body that starts with a NUL byte
is "Expecting value ... (char 0)", not a UTF-16 codec error a megabyte further on). Interpreters
without the C accelerators use the standard functions.
"""

from __future__ import annotations

import json
from json import encoder as _encoder
from json import scanner as _scanner
from typing import Any

__all__ = ["dumps", "loads"]

_checking = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_decoder = json.JSONDecoder()
_decode_text = _decoder.decode

# The C accelerators are not in the typeshed stubs (and absent on some interpreters): looked up.
_make_encoder: Any = getattr(_encoder, "c_make_encoder", None)
_make_scanner: Any = getattr(_scanner, "c_make_scanner", None)
_c_encoder = (
    _make_encoder(
        None,  # no circular-reference memo: see the module docstring
        _checking.default,
        _encoder.encode_basestring,
        None,
        ":",
        ",",
        False,
        False,
        True,
    )
    if _make_encoder is not None
    else None
)
_c_scan = _make_scanner(_decoder) if _make_scanner is not None else None


def dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is (the body is UTF-8).

    :raises TypeError: for a value JSON cannot represent.
    :raises ValueError: for a circular structure.
    """
    if _c_encoder is None:
        return _checking.encode(value)
    if type(value) is str:
        return _encoder.encode_basestring(value)
    try:
        return "".join(_c_encoder(value, 0))
    except RecursionError:
        return _checking.encode(value)  # a circular structure: the checking encoder says so


def loads(body: bytes | bytearray | memoryview) -> Any:
    """A JSON value from bytes (UTF-8 as RFC 8259 requires; other encodings take ``json.loads``).

    :raises ValueError: ``json.JSONDecodeError`` or ``UnicodeDecodeError`` when it is not JSON.
    """
    try:
        text = body.decode() if type(body) is bytes else bytes(body).decode()
    except UnicodeDecodeError as not_utf8:
        try:
            return json.loads(bytes(body))  # UTF-16/32: json.loads detects it
        except UnicodeDecodeError:
            raise not_utf8 from None  # neither: say that it is not UTF-8, not what was guessed
    if _c_scan is not None:
        try:
            value, end = _c_scan(text, 0)
        except (StopIteration, ValueError):
            pass  # leading whitespace, empty or bad input: the full decoder below
        else:
            if end == len(text):
                return value
    try:
        return _decode_text(text)
    except ValueError as as_utf8:
        try:
            return json.loads(bytes(body))  # a UTF-8 BOM, UTF-16 without one: json.loads detects
        except ValueError:
            if text.startswith("\ufeff"):
                raise  # json.loads read past the BOM: its error is the true one
            # Valid UTF-8, the encoding JSON requires, so its reading's error is the true one:
            # json.loads guesses UTF-16 for text that starts with a NUL byte, say, and reports a
            # codec error far from the fault.
            raise as_utf8 from None
