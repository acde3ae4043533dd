"""A nats-py client with cheaper header handling: the largest cost of carrying AMB's metadata.

nats-py validates every header key with a regular expression and every value with ``translate`` on
each publish, and parses received header blocks with a generator per line; with AMB's three to five
headers per message that doubled the cost of a publish. This subclass overrides the two internal
methods concerned, keeping their semantics: keys are validated once and remembered, values still
lose CR/LF, and parsing still skips malformed lines. When a nats-py version lacks those internals,
the plain client is used (correct, only slower).

On receipt, subscriptions the bus reads from nats-py's pending queue can ask for raw deliveries
(:meth:`_FastHeadersClient.deliver_raw`): the subject, reply, body and header block as bytes, with
no ``Msg`` and no header dict in between, which is most of what a core delivery cost beyond the
decoding the bus does anyway.

A PING (what ``flush()`` sends) is queued behind the commands before it instead of being written
ahead of them, so that a flush after ``subscribe()`` returns once the server has the subscription.

The server's ``max_payload`` bounds the header block *and* the body; nats-py checks the body only,
and a message past the limit makes the server close the connection (nats-py does not come back
from that). So this client checks the whole size and raises :class:`PayloadTooLarge` before
sending, and :func:`header_block_size` lets the transport check before it even gets here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from nats.aio.client import Client
from nats.errors import (
    BadHeaderError,
    BadSubjectError,
    ConnectionClosedError,
    ConnectionDrainingError,
    MaxPayloadError,
    OutboundBufferLimitError,
    SlowConsumerError,
)

__all__ = [
    "HEADER_LINE_SIZE",
    "KEY_PATTERN",
    "PayloadTooLarge",
    "clean_value",
    "header_block_size",
    "known_keys",
    "make_client",
]

_KEY = KEY_PATTERN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_KEYS_LIMIT = 4096
_CRLF = b"\r\n"
_PING = b"PING\r\n"
_STATUS_AT = len(b"NATS/1.0")  # a space here starts an inline status
_HEADER_LINE = b"NATS/1.0\r\n"
_BLOCK_AT = HEADER_LINE_SIZE = len(_HEADER_LINE)  # where a header block's lines start
_FRAMING = _BLOCK_AT + len(_CRLF)  # a header block's bytes beyond its lines
_SPACE = ord(" ")
_CONNECTED, _CLOSED, _DRAINING_PUBS = (
    getattr(Client, name, None) for name in ("CONNECTED", "CLOSED", "DRAINING_PUBS")
)


class PayloadTooLarge(MaxPayloadError):
    """Header block and body together exceed the server's ``max_payload``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size


def header_block_size(headers: Mapping[str, str] | None) -> int:
    """The bytes of the NATS header block nats-py (or this client) writes for ``headers``."""
    if not headers:
        return 0
    size = len(_HEADER_LINE) + len(_CRLF)
    for key, value in headers.items():
        key = key.strip()
        if key:
            size += len(key.encode()) + 4 + len(clean_value(value).encode())  # ": " and CRLF
    return size


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

    def __init__(self) -> None:
        super().__init__()
        self._raw_sids: set[int] = set()

    def deliver_raw(self, sid: int) -> bool:
        """Queue the messages of subscription ``sid`` as ``(subject, reply, data, header block)``
        tuples of bytes instead of nats-py ``Msg`` objects: no ``Msg``, no header coroutine, no
        dict for headers the reader decodes straight away. Only for a plain subscription read
        from its pending queue (no callback's ``Msg`` expected, no JetStream, no old-style
        request, no message limit); False, nothing changed, for any other."""
        sub = self._subs.get(sid)
        if (
            sub is None
            or sub._cb is not None
            or sub._future is not None
            or sub._jsi is not None
            or sub._max_msgs > 0
        ):
            return False
        self._raw_sids.add(sid)
        return True

    def forget_raw(self, sid: int) -> None:
        """Undo :meth:`deliver_raw` (a closed subscription's sid is not reused, but keep the set
        small)."""
        self._raw_sids.discard(sid)

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        """nats-py's, for subscriptions marked by :meth:`deliver_raw`: the same statistics,
        pending accounting and slow-consumer reports, with a tuple queued instead of a ``Msg``.
        A block with an inline status goes the usual way."""
        if sid not in self._raw_sids or (headers and headers[_STATUS_AT] == _SPACE):
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        sub = self._subs.get(sid)
        if sub is None or sub._max_msgs > 0:  # gone, or auto-unsubscribe set since: nats-py's way
            self._raw_sids.discard(sid)
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        size = len(data)
        stats = self.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += size
        sub._received += 1
        sub._pending_size += size
        limit = sub._pending_bytes_limit
        if limit > 0 and sub._pending_size >= limit:
            sub._pending_size -= size
        else:
            try:
                queue: asyncio.Queue[Any] = sub._pending_queue
                queue.put_nowait((subject, reply, data, headers))
                return
            except asyncio.QueueFull:
                sub._pending_size -= size
        await self._error_cb(
            SlowConsumerError(subject=subject.decode(), reply=reply.decode(), sid=sid, sub=sub)
        )

    async def _send_ping(self, future: asyncio.Future[Any] | None = None) -> None:
        """nats-py writes PING straight to the socket, ahead of the commands still queued for its
        flusher: a SUB just sent, say. The PONG could then come back before the server had read
        the SUB, so ``subscribe()`` then ``flush()`` did not mean the server had the interest, and
        a request sent at once from another connection could be answered "no responders" (seen
        in CI). Here the PING is queued behind them, so a PONG acknowledges everything before it.
        Not while (re)connecting: queued then, it would reach the next connection after nats-py
        has reset its list of PONGs awaited, and its PONG would answer a later flush too early.
        """
        if self._status != _CONNECTED:
            await super()._send_ping(future)
            return
        if future is None:
            future = asyncio.get_running_loop().create_future()
        self._pongs.append(future)
        self._pending.append(_PING)
        self._pending_data_size += len(_PING)
        await self._flush_pending()

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
            if payload_size > self._max_payload:
                raise PayloadTooLarge(payload_size)
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
            if size + payload_size > self._max_payload:
                raise PayloadTooLarge(size + payload_size)
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
        checks as nats-py's ``publish``, minus the subject's (AMB checks topics). The command is
        queued inline (what nats-py's ``_send_command`` does, without its coroutine)."""
        size = len(payload)
        hsize = (len(lines) if lines.isascii() else len(lines.encode())) + _FRAMING
        if hsize + size > self._max_payload:
            raise PayloadTooLarge(hsize + size)
        status = self._status
        if status != _CONNECTED:
            if status == _CLOSED:
                raise ConnectionClosedError
            if status == _DRAINING_PUBS:
                raise ConnectionDrainingError
            if not self.is_connected and (
                self._max_pending_size <= 0
                or size + self._pending_data_size > self._max_pending_size
            ):
                raise OutboundBufferLimitError
        cmd = b"".join(
            (
                f"HPUB {subject} {reply} {hsize} {hsize + size}\r\nNATS/1.0\r\n{lines}\r\n".encode(),
                payload,
                _CRLF,
            )
        )
        stats = self.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += size
        self._pending.append(cmd)
        self._pending_data_size += len(cmd)
        if 0 < self._max_pending_size < self._pending_data_size:
            await self._flush_pending(force_flush=True)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    def queue_lines(self, subject: str, payload: bytes, lines: str, reply: str = "") -> bool:
        """:meth:`publish_lines` without waiting: queue the command for the flusher task and
        wake it, as nats-py does; False, with nothing done, when that would need a wait (not
        connected, the flusher gone or its queue full, the pending buffer full) or an error
        (too large), so that the caller awaits :meth:`publish_lines` instead."""
        flusher, kick = self._flusher_task, self._flush_queue
        if (
            self._status != _CONNECTED
            or flusher is None
            or flusher.done()
            or kick is None
            or kick.full()
        ):
            return False
        size = len(payload)
        hsize = (len(lines) if lines.isascii() else len(lines.encode())) + _FRAMING
        if hsize + size > self._max_payload:
            return False
        cmd = b"".join(
            (
                f"HPUB {subject} {reply} {hsize} {hsize + size}\r\nNATS/1.0\r\n{lines}\r\n".encode(),
                payload,
                _CRLF,
            )
        )
        pending = self._pending_data_size + len(cmd)
        if 0 < self._max_pending_size < pending:
            return False
        stats = self.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += size
        self._pending.append(cmd)
        self._pending_data_size = pending
        if kick.empty():
            kick.put_nowait(asyncio.get_running_loop().create_future())
        return True

    async def _process_headers(self, headers: bytes) -> dict[str, str] | None:
        """Plain header blocks straight to :meth:`_parse_header_lines`; blocks with an inline
        status (``NATS/1.0 503``: no responders, JetStream heartbeats) go to nats-py's own."""
        if not headers:
            return None
        if headers[_STATUS_AT] == _SPACE:
            parsed: dict[str, str] | None = await super()._process_headers(headers)
            return parsed
        return self._parse_header_lines(headers[_BLOCK_AT:]) or None

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


_METHODS = (
    "_send_publish",
    "_parse_header_lines",
    "_process_headers",
    "_process_msg",
    "_flush_pending",
    "_send_ping",
)
_STATE = (
    "_subs",
    "_pongs",
    "_error_cb",
    "_status",
    "_pending",
    "_pending_data_size",
    "_max_pending_size",
    "_flush_queue",
    "_flusher_task",
)


def make_client() -> Client:
    """A connected-to-be nats-py client: the fast-headers one when this nats-py has the internals
    it relies on (checked on a fresh instance, since most are set in ``__init__``)."""
    if all(hasattr(Client, name) for name in _METHODS) and None not in (
        _CONNECTED,
        _CLOSED,
        _DRAINING_PUBS,
    ):
        client = _FastHeadersClient()
        if all(hasattr(client, name) for name in _STATE):
            return client
    return Client()
