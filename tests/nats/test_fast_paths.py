"""The core mode's coroutine-free paths: ``publish_now`` (a publish queued for nats-py's flusher)
and ``ready`` (a message nats-py has already queued), and when each declines."""

from __future__ import annotations

import uuid

import anyio
import pytest

from amb_core import Message, MessageBus
from amb_core.transport import SubscriptionSpec
from amb_nats import NATSTransport

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


async def test_ready_hands_out_what_nats_py_has_queued(nats_url: str) -> None:
    topic = f"fast.{uuid.uuid4().hex[:10]}"
    transport = NATSTransport.from_url(nats_url)
    async with MessageBus(transport) as bus:
        sub = await transport.subscribe(SubscriptionSpec(topic))
        assert sub.ready() is None  # nothing yet, and no waiting
        for i in range(3):
            await bus.publish(topic, i)
        with anyio.fail_after(5):
            while True:  # the messages reach nats-py's queue once the server sends them
                first = sub.ready()
                if first is not None:
                    break
                await anyio.sleep(0.01)
        rest = [await sub.__anext__() for _ in range(2)]
        assert [d.message.payload for d in (first, *rest)] == [0, 1, 2]
        await sub.aclose()
        assert sub.ready() is None


async def test_publish_now_declines_for_jetstream_and_when_disconnected(
    nats_url: str, stream_prefix: str
) -> None:
    message = Message(topic="fast.x", payload=1)
    core = NATSTransport.from_url(nats_url)
    assert not core.publish_now(message)  # not connected yet
    await core.connect()
    try:
        assert core.publish_now(message)
    finally:
        await core.aclose()
    assert not core.publish_now(message)  # closed
    jetstream = NATSTransport.from_url(nats_url, mode="jetstream", stream_prefix=stream_prefix)
    await jetstream.connect()
    try:
        assert not jetstream.publish_now(message)  # waits for its acknowledgement
    finally:
        await jetstream.aclose()


async def test_publish_now_declines_a_message_over_max_payload(nats_url: str) -> None:
    """Declined with nothing sent, so that publish() raises the typed error."""
    transport = NATSTransport.from_url(nats_url)
    await transport.connect()
    try:
        big = Message(topic="fast.big", payload="x" * (transport._client()._max_payload + 1))
        assert not transport.publish_now(big)
    finally:
        await transport.aclose()


async def test_raw_deliveries_decode_as_nats_py_messages_do(nats_url: str) -> None:
    """The raw path (tuples of bytes, see ``_FastHeadersClient.deliver_raw``) is taken by core
    subscriptions and yields what the ``Msg`` path yields, field for field."""
    topic = f"fast.{uuid.uuid4().hex[:10]}"
    transport = NATSTransport.from_url(nats_url)
    async with MessageBus(transport) as bus:
        raw = await transport.subscribe(SubscriptionSpec(topic))
        plain = await transport.subscribe(SubscriptionSpec(topic))
        nc = transport._client()
        plain_sid = plain._inner._sub._id  # type: ignore[attr-defined]  # _Tracked -> Core -> nats
        assert plain_sid in nc._raw_sids
        nc.forget_raw(plain_sid)  # this one gets nats-py's Msg objects
        sent = [
            await bus.publish(topic, {"a": [1, 2.5, None]}),
            await bus.publish(
                topic,
                b"\x00\xffbytes",
                headers={"x-trace": "t1", "Other-Key": "v: with colon", "x-uni": "é ü"},
                key="k1",
                ttl=30.0,
                priority=3,
                correlation_id="c-1",
                reply_to="_INBOX.someone",
                sender="agent-a",
            ),
        ]
        with anyio.fail_after(5):
            got_raw = [await raw.__anext__() for _ in sent]
            got_plain = [await plain.__anext__() for _ in sent]
        assert raw._inner._queue.empty() and plain._inner._queue.empty()  # type: ignore[attr-defined]
        for message, a, b in zip(sent, got_raw, got_plain, strict=True):
            assert a.error is None and b.error is None
            assert a.message == b.message == message
        await raw.aclose()
        await plain.aclose()
        assert not nc._raw_sids


async def test_raw_path_keeps_nats_py_accounting_and_reports_a_slow_consumer(
    nats_url: str,
) -> None:
    """Past the pending limit the raw path drops and reports, as nats-py does, and counts the
    same statistics; a message limit set later sends the subscription back to nats-py's path."""
    from nats.errors import SlowConsumerError

    from amb_nats._client import make_client

    errors: list[Exception] = []
    two_errors = anyio.Event()

    async def error_cb(exc: Exception) -> None:
        errors.append(exc)
        if len(errors) == 2:
            two_errors.set()

    nc = make_client()
    await nc.connect(nats_url, error_cb=error_cb, allow_reconnect=False)
    try:
        subject = f"fast.{uuid.uuid4().hex[:10]}"
        sub = await nc.subscribe(subject, pending_msgs_limit=3)
        assert nc.deliver_raw(sub._id)
        for i in range(5):
            await nc.publish(subject, str(i).encode(), headers={"h": str(i)})
        await nc.flush()
        with anyio.fail_after(5):
            await two_errors.wait()
        assert all(isinstance(e, SlowConsumerError) and e.subject == subject for e in errors)
        queued = [sub._pending_queue.get_nowait() for _ in range(3)]
        assert [q[2] for q in queued] == [b"0", b"1", b"2"]
        assert queued[0][0] == subject.encode() and queued[0][3].startswith(b"NATS/1.0\r\n")
        assert sub._pending_size == 3 and sub._received == 5
        assert nc.stats["in_msgs"] >= 5
        sub._pending_size = 0
        await sub.unsubscribe(limit=sub._received + 1)  # auto-unsubscribe after one more
        await nc.publish(subject, b"last")
        await nc.flush()
        with anyio.fail_after(5):
            msg = await sub._pending_queue.get()
        assert msg.data == b"last"  # nats-py's Msg again
        assert sub._id not in nc._raw_sids
    finally:
        await nc.close()


async def test_deliver_raw_refuses_what_reads_msg_objects(nats_url: str) -> None:
    from amb_nats._client import make_client

    nc = make_client()
    await nc.connect(nats_url, allow_reconnect=False)
    try:

        async def cb(msg: object) -> None:
            pass

        with_callback = await nc.subscribe(f"fast.{uuid.uuid4().hex[:10]}", cb=cb)
        limited = await nc.subscribe(f"fast.{uuid.uuid4().hex[:10]}", max_msgs=2)
        assert not nc.deliver_raw(with_callback._id)
        assert not nc.deliver_raw(limited._id)
        assert not nc.deliver_raw(10_000_000)  # no such subscription
        assert not nc._raw_sids
    finally:
        await nc.close()


async def test_a_flush_is_answered_after_the_commands_before_it(nats_url: str) -> None:
    """nats-py wrote PING ahead of a SUB still queued for its flusher, so ``flush()`` could
    return before the server had the subscription. The bytes reach the socket in order now."""
    transport = NATSTransport.from_url(nats_url)
    await transport.connect()
    try:
        nc = transport._client()
        written: list[bytes] = []
        sock = nc._transport
        write, writelines = sock.write, sock.writelines
        sock.write = lambda data: (written.append(bytes(data)), write(data))[1]
        sock.writelines = lambda lines: (
            written.extend(bytes(x) for x in lines),
            writelines(lines),
        )[1]
        try:
            topic = f"fast.{uuid.uuid4().hex[:10]}"
            await nc.subscribe(topic)
            await nc.flush(timeout=5)
        finally:
            sock.write, sock.writelines = write, writelines
        stream = b"".join(written)
        assert f"SUB {topic} ".encode() in stream and b"PING\r\n" in stream
        assert stream.index(f"SUB {topic} ".encode()) < stream.index(b"PING\r\n")
    finally:
        await transport.aclose()


async def test_a_request_right_after_another_connection_subscribes_is_answered(
    nats_url: str,
) -> None:
    """The end-to-end form of the test above: never "no responders" for a subscription made."""
    async with MessageBus.from_url(nats_url) as asker, MessageBus.from_url(nats_url) as answerer:
        for _ in range(50):
            topic = f"fast.{uuid.uuid4().hex[:10]}"
            await answerer.subscribe(topic, lambda m: "here")
            assert (await asker.request(topic, None, timeout=5)).payload == "here"
