"""AMB on a NATS server it shares with other applications (issue 14, defect 1).

A request resolves only with its responder's reply, never with a message the server sends to the
reply subject (a JetStream PubAck from a stream capturing the subject, a status); and AMB's own
JetStream streams keep to AMB's prefixed subjects, so they neither store nor answer the core
traffic of a core-mode bus or of a plain nats-py client that uses the same first tokens.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import nats
import nats.errors
import pytest

from amb_core import MessageBus
from amb_core.errors import NoRespondersError, RequestTimeoutError
from amb_core.message import Message
from amb_core.testing.conformance import wait_until
from amb_nats import NATSTransport
from amb_nats.errors import NATSError

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def host_port(url: str) -> tuple[str, int]:
    netloc = url.split("://", 1)[1].split("?", 1)[0].split("/", 1)[0].split(",")[0]
    host, _, port = netloc.rpartition("@")[2].rpartition(":")
    return host or "127.0.0.1", int(port or 4222)


async def status_then_reply(url: str, subject: str, ready: anyio.Event) -> None:
    """A responder on a raw socket: answers one request first with the status messages the server
    sends to reply subjects (byte for byte: an inline ``NATS/1.0 <code>`` header, no body), then
    with a plain JSON reply."""
    host, port = host_port(url)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\n')
        writer.write(f"SUB {subject} 1\r\nPING\r\n".encode())
        while (await reader.readline()).strip() != b"PONG":
            pass
        ready.set()
        while True:
            line = await reader.readline()
            if line.startswith((b"MSG", b"HMSG")):
                break
        parts = line.split()
        reply = parts[3].decode()
        await reader.readexactly(int(parts[-1]) + 2)
        for status in (
            b"NATS/1.0 408 Request Timeout\r\n\r\n",
            b"NATS/1.0 100 Idle Heartbeat\r\n\r\n",
        ):
            writer.write(
                f"HPUB {reply} {len(status)} {len(status)}\r\n".encode() + status + b"\r\n"
            )
        body = b'{"answer": "raw"}'
        writer.write(f"PUB {reply} {len(body)}\r\n".encode() + body + b"\r\n")
        await writer.drain()
        await reader.readline()  # the server's next line (a PING or EOF) once it has them
    finally:
        writer.close()


async def reachable(ask: Callable[[], Awaitable[Any]], subject: str) -> None:
    """Wait until ``ask()``, a request from one connection, finds the responder another connection
    just subscribed.

    The bus returns from ``subscribe`` once the server acknowledged the SUB (PING/PONG on its
    connection), yet about one run in 700 the very next request from a second connection still got
    the server's no-responders status (or, where a stream captures the subject, only its PubAck:
    a timeout); a readiness poll keeps that rarity out of what is tested.
    """
    deadline = anyio.current_time() + 5
    while True:
        try:
            await ask()
            return
        except (nats.errors.NoRespondersError, NoRespondersError, RequestTimeoutError):
            assert anyio.current_time() < deadline, f"nobody answers on {subject}"
            await anyio.sleep(0.01)


async def test_a_request_is_answered_by_its_responder_not_by_a_foreign_stream(
    nats_url: str,
) -> None:
    """Another application's stream captures the subjects a core bus serves: every PubAck it sends
    to the request's reply subject is passed over, and the responder's answer is returned."""
    ns = unique("zeta")
    stream = unique("FOREIGN_")
    other = await nats.connect(nats_url)
    js = other.jetstream()
    await js.add_stream(name=stream, subjects=[f"{ns}.>"], storage="memory")
    try:
        async with MessageBus.from_url(nats_url) as core:
            await core.subscribe(f"{ns}.rpc.b", lambda m: {"answer": m.payload["n"]})

            async def plain(msg: Any) -> None:  # a non-AMB responder: no headers
                await msg.respond(json.dumps({"plain": json.loads(msg.data)["n"]}).encode())

            async def ack_like(msg: Any) -> None:  # PubAck-like, but with a seq that is no int
                await msg.respond(b'{"stream": "mine", "seq": "7"}')

            await other.subscribe(f"{ns}.rpc.plain", cb=plain)
            await other.subscribe(f"{ns}.rpc.acklike", cb=ack_like)
            await other.flush()
            for name in ("plain", "acklike"):
                subject = f"{ns}.rpc.{name}"
                await reachable(lambda s=subject: core.request(s, {"n": -1}, timeout=1), subject)
            for n in range(20):
                reply = await core.request(f"{ns}.rpc.b", {"n": n}, timeout=5)
                assert reply.payload == {"answer": n}, reply.payload
                reply = await core.request(f"{ns}.rpc.plain", {"n": n}, timeout=5)
                assert reply.payload == {"plain": n}, reply.payload
            reply = await core.request(f"{ns}.rpc.acklike", {}, timeout=5)
            assert reply.payload == {"stream": "mine", "seq": "7"}
        stored = (await js.stream_info(stream)).state.messages
        assert stored >= 41, "the stream did store the requests: its PubAcks were real"
    finally:
        await js.delete_stream(stream)
        await other.close()


async def test_a_status_sent_to_the_reply_subject_is_not_the_reply(nats_url: str) -> None:
    subject = f"{unique('status')}.rpc"
    ready = anyio.Event()
    async with MessageBus.from_url(nats_url) as core, anyio.create_task_group() as tg:
        tg.start_soon(status_then_reply, nats_url, subject, ready)
        with anyio.fail_after(5):
            await ready.wait()
        reply = await core.request(subject, {"q": 1}, timeout=5)
        assert reply.payload == {"answer": "raw"}


async def test_amb_streams_neither_store_nor_answer_other_core_traffic(
    nats_url: str, stream_prefix: str
) -> None:
    """The repro of issue 14: a JetStream bus uses namespace ``zeta``; a core bus and a plain
    nats-py client then use ``zeta.*`` subjects on the same server."""
    ns = unique("zeta")
    js_url = f"{nats_url}{'&' if '?' in nats_url else '?'}mode=jetstream&storage=memory"
    async with (
        MessageBus.from_url(js_url, stream_prefix=stream_prefix) as durable,
        MessageBus.from_url(nats_url) as core,
    ):
        kept: list[Any] = []
        await durable.subscribe(f"{ns}.jobs", lambda m: kept.append(m.payload), group="workers")
        await durable.publish(f"{ns}.jobs", "amb")
        other = await nats.connect(nats_url)
        try:
            # Another application's request/reply: no stream answers in the responder's place.
            with pytest.raises(nats.errors.NoRespondersError):
                await other.request(f"{ns}.rpc.nobody", b"{}", timeout=5)
            await core.subscribe(f"{ns}.rpc.b", lambda m: "from the responder")
            await reachable(lambda: other.request(f"{ns}.rpc.b", b"null", timeout=1), "rpc.b")
            for _ in range(10):
                reply = await other.request(f"{ns}.rpc.b", b"{}", timeout=5)
                assert json.loads(reply.data) == "from the responder"
                assert (await core.request(f"{ns}.rpc.b", {}, timeout=5)).payload == (
                    "from the responder"
                )
            await other.publish(f"{ns}.jobs", b'"core traffic"')
            await core.publish(f"{ns}.jobs", "core bus")
            # A non-AMB producer that wants its message kept publishes to the prefixed subject.
            ack = await other.jetstream().publish(f"{stream_prefix}.{ns}.jobs", b'"foreign"')
            assert ack.stream == f"{stream_prefix}_{ns}"
            await wait_until(lambda: kept == ["amb", "foreign"], 10, lambda: f"kept {kept}")
            await anyio.sleep(0.3)  # nothing else arrives
            assert kept == ["amb", "foreign"]
            info = await other.jetstream().stream_info(f"{stream_prefix}_{ns}")
            assert info.config.subjects == [f"{stream_prefix}.{ns}", f"{stream_prefix}.{ns}.>"]
            assert info.state.messages == 2, "only AMB's publish and the foreign producer's"
        finally:
            await other.close()


async def test_a_stream_of_the_old_layout_is_named_in_the_error(
    nats_url: str, stream_prefix: str
) -> None:
    ns = unique("old")
    other = await nats.connect(nats_url)
    await other.jetstream().add_stream(
        name=f"{stream_prefix}_{ns}", subjects=[ns, f"{ns}.>"], storage="memory"
    )
    await other.close()
    transport = NATSTransport.from_url(nats_url, mode="jetstream", stream_prefix=stream_prefix)
    await transport.connect()
    try:
        with pytest.raises(NATSError, match=r"does not capture .*\.old.*layout before"):
            await transport.publish(Message(f"{ns}.x", 1))
    finally:
        await transport.aclose()
