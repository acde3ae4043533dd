"""A nats-py client with cheaper header handling: the largest cost of carrying AMB's metadata.

nats-py validates every header key with a regular expression and every value with ``translate`` on
each publish, and parses received header blocks with a generator per line; with AMB's three to five
headers per message that doubled the cost of a publish. This subclass overrides the two internal
methods concerned, keeping their semantics: keys are validated once and remembered, values still
lose CR/LF, and parsing still skips malformed lines. When a nats-py version lacks those internals,
the plain client is used (correct, only slower).
"""

from __future__ import annotations

import re
from typing import Any

from nats.aio.client import Client
from nats.errors import (
    BadHeaderError,
    BadSubjectError,
    ConnectionClosedError,
    ConnectionDrainingError,
    MaxPayloadError,
    OutboundBufferLimitError,
)

__all__ = ["KEY_PATTERN", "clean_value", "known_keys", "make_client"]

_KEY = KEY_PATTERN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_KEYS_LIMIT = 4096
_CRLF = b"\r\n"


def clean_value(value: str) -> str:
    """A header value as nats-py sends it: CR/LF replaced, surrounding space stripped."""
    if "\r" in value or "\n" in value:
        value = value.translate(_NEWLINES)
    return value.strip()


def known_keys() -> set[str]:
    """Header keys already validated (shared, bounded)."""
    valid = _FastHeadersClient._valid_keys
    return valid if len(valid) < _KEYS_LIMIT else set()


class _FastHeadersClient(Client):
    """nats-py's client with a header encoder and parser that cost a fraction of the originals."""

    _valid_keys: set[str] = set()

    async def _send_publish(
        self,
        subject: str,
        reply: str,
        payload: bytes,
        payload_size: int,
        headers: dict[str, Any] | None,
    ) -> None:
        if subject == "":
            raise BadSubjectError
        if headers is None:
            cmd = b"".join((f"PUB {subject} {reply} {payload_size}\r\n".encode(), payload, _CRLF))
        else:
            valid = self._valid_keys
            lines = ["NATS/1.0\r\n"]
            for key, value in headers.items():
                if key not in valid:
                    key = key.strip()
                    if not key:
                        continue
                    if not _KEY.fullmatch(key):
                        raise BadHeaderError(key)
                    if len(valid) < _KEYS_LIMIT:
                        valid.add(key)
                if "\r" in value or "\n" in value:
                    value = value.translate(_NEWLINES)
                lines.append(f"{key}: {value.strip()}\r\n")
            lines.append("\r\n")
            hdr = "".join(lines).encode()
            size = len(hdr)
            cmd = b"".join(
                (
                    f"HPUB {subject} {reply} {size} {size + payload_size}\r\n".encode(),
                    hdr,
                    payload,
                    _CRLF,
                )
            )
        stats = self.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += payload_size
        await self._send_command(cmd)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    async def publish_lines(
        self, subject: str, payload: bytes, lines: str, reply: str = ""
    ) -> None:
        """``publish`` with the header lines already written (see :mod:`amb_nats._wire`); the same
        checks as nats-py's ``publish``, minus the subject's (AMB checks topics)."""
        if self.is_closed:
            raise ConnectionClosedError
        if self.is_draining_pubs:
            raise ConnectionDrainingError
        size = len(payload)
        if not self.is_connected and (
            self._max_pending_size <= 0 or size + self._pending_data_size > self._max_pending_size
        ):
            raise OutboundBufferLimitError
        if size > self._max_payload:
            raise MaxPayloadError
        hdr = f"NATS/1.0\r\n{lines}\r\n".encode()
        hsize = len(hdr)
        cmd = b"".join(
            (f"HPUB {subject} {reply} {hsize} {hsize + size}\r\n".encode(), hdr, payload, _CRLF)
        )
        stats = self.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += size
        await self._send_command(cmd)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        valid = _FastHeadersClient._valid_keys
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if not sep:
                continue
            if name not in valid:
                name = name.strip()
                if not name or not name.isascii() or not name.isprintable() or " " in name:
                    continue
            out[name] = value.strip()
        return out


def _compatible() -> bool:
    return all(
        hasattr(Client, name)
        for name in ("_send_publish", "_parse_header_lines", "_send_command", "_flush_pending")
    )


def make_client() -> Client:
    """A connected-to-be nats-py client (the fast-headers one when this nats-py allows it)."""
    return _FastHeadersClient() if _compatible() else Client()
