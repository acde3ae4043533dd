"""Faults against real nats-servers: restarts under load, a consumer killed mid-handler, foreign
bytes from another client, publish dedup, and the JetStream settings tied to the bus's policy."""

from __future__ import annotations

import signal
import time
import uuid
from typing import Any

import anyio
import pytest

from amb_core import MessageBus
from amb_core.deadletter import H_DLQ_REASON, H_DLQ_TRUNCATED, RetryPolicy
from amb_core.errors import AMBError, PublishError, RequestError, TransportError
from amb_core.message import Message
from amb_core.testing.conformance import wait_until
from amb_core.testing.servers import ServerProcess
from amb_core.transport import SubscriptionSpec
from amb_nats import NATSTransport
from amb_nats.naming import consumer_name
from tests import hanging_consumer

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def restart(server: ServerProcess, down: float = 0.3) -> None:
    """Stop the server, keep it down a moment, start it on the same port and data directory."""
    await anyio.to_thread.run_sync(server.stop)
    await anyio.sleep(down)
    await anyio.to_thread.run_sync(server.start)


async def test_core_bus_survives_a_restart_and_requests_fail_typed(
    nats_server: ServerProcess,
) -> None:
    url = f"nats://127.0.0.1:{nats_server.port}"
    topic = unique("restart")
    async with MessageBus.from_url(url) as server_bus, MessageBus.from_url(url) as client:
        got: list[Message] = []
        await server_bus.subscribe(f"{topic}.events", got.append)
        await server_bus.subscribe(f"{topic}.echo", lambda m: m.payload)
        assert (await client.request(f"{topic}.echo", 1, timeout=5)).payload == 1
        stop = anyio.Event()
        sent = 0

        async def load() -> None:
            nonlocal sent
            while not stop.is_set():
                await client.publish(f"{topic}.events", sent)
                sent += 1
                await anyio.sleep(0.001)

        failures: list[BaseException] = []

        async def ask_during_outage() -> None:
            started = time.monotonic()
            try:
                await client.request(f"{topic}.echo", 2, timeout=1.0)
            except AMBError as exc:  # RequestTimeoutError, NoRespondersError or NATSError: typed
                failures.append(exc)
            assert time.monotonic() - started < 3, "a request in flight does not hang"

        async with anyio.create_task_group() as tg:
            tg.start_soon(load)
            await anyio.sleep(0.2)
            await anyio.to_thread.run_sync(nats_server.stop)
            tg.start_soon(ask_during_outage)
            await anyio.sleep(0.5)
            await anyio.to_thread.run_sync(nats_server.start)
            before = len(got)
            await wait_until(lambda: len(got) > before + 10, 15, "messages after the restart")
            stop.set()
        assert len(failures) == 1 and isinstance(failures[0], AMBError)

        async def answered() -> bool:
            try:
                return (await client.request(f"{topic}.echo", 3, timeout=1)).payload == 3
            except RequestError:
                return False

        deadline = time.monotonic() + 15
        while not await answered():
            assert time.monotonic() < deadline, "requests work again after the restart"
            await anyio.sleep(0.1)


async def test_request_in_flight_fails_at_once_when_the_connection_drops(
    nats_server: ServerProcess,
) -> None:
    url = f"nats://127.0.0.1:{nats_server.port}"
    topic = unique("inflight")
    server_bus = MessageBus.from_url(url, drain_timeout=0.2)
    async with server_bus, MessageBus.from_url(url) as client:
        answering = anyio.Event()

        async def slow(message: Message) -> Any:
            answering.set()
            await anyio.sleep(30)

        await server_bus.subscribe(f"{topic}.slow", slow)
        caught: list[BaseException] = []
        failed = anyio.Event()

        async def ask() -> None:
            try:
                await client.request(f"{topic}.slow", 1, timeout=30)
            except AMBError as exc:
                caught.append(exc)
                failed.set()

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            with anyio.fail_after(10):
                await answering.wait()
            await anyio.to_thread.run_sync(nats_server.stop)
            with anyio.fail_after(10):
                await failed.wait()
        assert time.monotonic() - started < 10, "not the 30 s timeout"
        assert isinstance(caught[0], TransportError), caught
        assert "connection was lost" in str(caught[0])
        await anyio.to_thread.run_sync(nats_server.start)


async def test_jetstream_loses_no_acknowledged_message_across_a_restart(
    nats_server: ServerProcess,
) -> None:
    url = f"nats://127.0.0.1:{nats_server.port}?mode=jetstream"
    topic = unique("durable")
    group = f"{topic}-g"
    acknowledged: list[int] = []
    refused = 0
    async with MessageBus.from_url(url) as bus:
        # The group exists before the publishing starts, so it must see every stored message.
        first = await bus.subscribe(f"{topic}.orders", lambda m: None, group=group)
        await first.cancel()
        stop = anyio.Event()

        async def load() -> None:
            nonlocal refused
            i = 0
            while not stop.is_set():
                try:
                    await bus.publish(f"{topic}.orders", i)
                    acknowledged.append(i)
                except PublishError:
                    refused += 1
                    await anyio.sleep(0.05)
                except AMBError:
                    refused += 1
                    await anyio.sleep(0.05)
                i += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(load)
            await anyio.sleep(0.3)
            await restart(nats_server)
            count = len(acknowledged)
            await wait_until(lambda: len(acknowledged) > count + 20, 20, "publishes after restart")
            stop.set()
    assert acknowledged, "some publishes were acknowledged"
    async with MessageBus.from_url(url) as reader:
        got: list[Any] = []
        await reader.subscribe(f"{topic}.orders", lambda m: got.append(m.payload), group=group)
        await wait_until(
            lambda: set(acknowledged) <= set(got), 20, "every acknowledged message after restart"
        )


async def test_consumer_killed_mid_handler_is_redelivered_after_ack_wait(
    nats_url: str, stream_prefix: str
) -> None:
    topic, group = unique("kill"), unique("killers")
    url = f"{nats_url}{'&' if '?' in nats_url else '?'}mode=jetstream&stream_prefix={stream_prefix}"
    proc = hanging_consumer.spawn(url, f"{topic}.job", group)
    try:
        assert proc.stdout is not None
        ready = await anyio.to_thread.run_sync(proc.stdout.readline)
        assert ready.strip() == "READY", proc.stderr.read() if proc.stderr else ready
        async with MessageBus.from_url(url) as bus:
            await bus.publish(f"{topic}.job", "precious")
            line = await anyio.to_thread.run_sync(proc.stdout.readline)
            assert line.strip() == "STARTED precious"
            proc.send_signal(signal.SIGKILL)
            await anyio.to_thread.run_sync(proc.wait, 10)
            got: list[Message] = []
            started = time.monotonic()
            await bus.subscribe(f"{topic}.job", got.append, group=group, ack_wait=1.0)
            await wait_until(lambda: bool(got), 15, "the redelivery")
            assert got[0].payload == "precious" and got[0].attempt >= 2
            assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("mode", ["core", "jetstream"])
async def test_foreign_bytes_from_another_client_go_to_the_dlq(
    nats_url: str, stream_prefix: str, mode: str
) -> None:
    import nats

    topic = unique("foreign")
    transport = NATSTransport.from_url(nats_url, mode=mode, stream_prefix=stream_prefix)
    async with MessageBus(transport) as bus:
        handled: list[Message] = []
        dead: list[Message] = []
        await bus.subscribe(f"{topic}.in", handled.append)
        await bus.subscribe(f"dlq.{topic}.>", dead.append)
        other = await nats.connect(nats_url)
        try:
            if mode == "jetstream":  # onto AMB's prefixed subject, as a foreign producer must
                js = other.jetstream()
                subject = f"{stream_prefix}.{topic}.in"
                await js.publish(subject, b"\x00\x01 not json")
                await js.publish(subject, b'{"from": "go"}', headers={"trace": "t"})
            else:
                await other.publish(f"{topic}.in", b"\x00\x01 not json")
                await other.publish(f"{topic}.in", b'{"from": "go"}', headers={"trace": "t"})
                await other.flush()
        finally:
            await other.close()
        await wait_until(lambda: len(dead) == 1 and len(handled) == 1, 10, "dlq and handler")
        assert dead[0].headers[H_DLQ_REASON] == "undecodable"
        assert dead[0].payload == b"\x00\x01 not json"
        assert handled[0].payload == {"from": "go"} and handled[0].headers == {"trace": "t"}


async def test_jetstream_dedups_a_republished_message_id(nats_url: str, stream_prefix: str) -> None:
    topic = unique("dedup")
    transport = NATSTransport.from_url(nats_url, mode="jetstream", stream_prefix=stream_prefix)
    async with MessageBus(transport) as bus:
        got: list[Message] = []
        await bus.subscribe(f"{topic}.x", got.append)
        message = Message(f"{topic}.x", {"n": 1})
        await transport.publish(message)
        await transport.publish(message)  # a retry after a lost acknowledgement
        await transport.publish(Message(f"{topic}.x", {"n": 2}))
        await wait_until(lambda: len(got) >= 2, 10, "two messages")
        await anyio.sleep(0.3)
        assert [m.payload for m in got] == [{"n": 1}, {"n": 2}]


async def test_consumer_settings_follow_the_bus_policy(nats_url: str, stream_prefix: str) -> None:
    topic = unique("policy")
    transport = NATSTransport.from_url(nats_url, mode="jetstream", stream_prefix=stream_prefix)
    await transport.connect()
    try:
        spec = SubscriptionSpec(f"{topic}.*", group="workers", max_attempts=4, ack_wait=7.5)
        sub = await transport.subscribe(spec)
        info = await transport._js.consumer_info(
            f"{stream_prefix}_{topic}", consumer_name("workers", f"{topic}.*")
        )
        assert info.config.max_deliver == 5, "the bus's attempts plus one spare"
        assert info.config.ack_wait == 7.5
        assert info.config.filter_subject == f"{stream_prefix}.{topic}.*"
        stream = await transport._js.stream_info(f"{stream_prefix}_{topic}")
        assert stream.config.subjects == [f"{stream_prefix}.{topic}", f"{stream_prefix}.{topic}.>"]
        await sub.aclose()
    finally:
        await transport.aclose()


async def test_nack_delay_is_scheduled_by_the_server(nats_url: str, stream_prefix: str) -> None:
    topic = unique("delay")
    transport = NATSTransport.from_url(nats_url, mode="jetstream", stream_prefix=stream_prefix)
    retry = RetryPolicy(max_attempts=2, initial_delay=0.5, max_delay=0.5, jitter=0)
    async with MessageBus(transport, retry=retry) as bus:
        seen: list[float] = []

        async def flaky(message: Message) -> None:
            seen.append(time.monotonic())
            if message.attempt == 1:
                raise RuntimeError("later")

        await bus.subscribe(f"{topic}.t", flaky)
        await bus.publish(f"{topic}.t", 1)
        await wait_until(lambda: len(seen) == 2, 10, "the retry")
        assert seen[1] - seen[0] >= 0.45


@pytest.mark.parametrize("group", [None, "live"])
async def test_jetstream_subscriber_keeps_reading_across_a_restart(
    nats_server: ServerProcess, group: str | None
) -> None:
    url = f"nats://127.0.0.1:{nats_server.port}?mode=jetstream"
    topic = unique("live")
    async with MessageBus.from_url(url) as bus:
        got: list[Any] = []
        await bus.subscribe(f"{topic}.x", lambda m: got.append(m.payload), group=group)
        await bus.publish(f"{topic}.x", "before")
        await wait_until(lambda: got == ["before"], 10, "the first message")
        await restart(nats_server)
        deadline = time.monotonic() + 20
        while True:  # publishes fail typed until JetStream is back
            try:
                await bus.publish(f"{topic}.x", "after")
                break
            except AMBError:
                assert time.monotonic() < deadline, "JetStream came back"
                await anyio.sleep(0.2)
        await wait_until(lambda: "after" in got, 20, "a message published after the restart")


async def test_deliveries_running_out_unseen_are_dead_lettered(
    nats_url: str, stream_prefix: str
) -> None:
    """Consumers that die during every attempt never fail a handler: the server's MAX_DELIVERIES
    advisory feeds the dead-letter path instead (once, although every member hears it)."""
    topic = unique("exhaust")
    url = f"{nats_url}{'&' if '?' in nats_url else '?'}mode=jetstream"
    transport = NATSTransport.from_url(url, stream_prefix=stream_prefix)
    other = NATSTransport.from_url(url, stream_prefix=stream_prefix)
    async with MessageBus.from_url(url, stream_prefix=stream_prefix) as bus:
        dead: list[Message] = []
        await bus.subscribe(f"dlq.{topic}.>", dead.append)
        await transport.connect()
        await other.connect()
        try:
            spec = SubscriptionSpec(f"{topic}.job", group="g", max_attempts=1, ack_wait=0.5)
            sub = await transport.subscribe(spec)
            # A second member hears the advisory too, and keeps pulling (the server checks the
            # delivery limit when it would redeliver to a waiting pull).
            member = await other.subscribe(spec)
            sent = await bus.publish(f"{topic}.job", {"n": 1}, headers={"trace": "t"})
            with anyio.fail_after(10):
                first = await sub.__anext__()  # never settled: as if the consumer died
                second = await sub.__anext__()  # the spare delivery, never settled either
            assert (first.attempt, second.attempt) == (1, 2)
            async with anyio.create_task_group() as tg:
                tg.start_soon(member.__anext__)
                await wait_until(lambda: len(dead) >= 1, 15, "the dead letter")
                await anyio.sleep(0.5)
                tg.cancel_scope.cancel()
        finally:
            await transport.aclose()
            await other.aclose()
    assert len(dead) == 1
    letter = dead[0]
    assert letter.payload == {"n": 1} and letter.headers["trace"] == "t"
    assert letter.headers[H_DLQ_REASON] == "max_attempts"
    assert letter.headers["amb-dlq-original-id"] == sent.id
    assert letter.headers["amb-dlq-topic"] == f"{topic}.job"


async def test_an_exhausted_message_too_large_for_its_dead_letter_is_stored_reduced(
    nats_url: str, stream_prefix: str
) -> None:
    """The advisory path's dead letter of a message that fits the server, but not with the
    dead-letter metadata, is stored as a marked excerpt (as the bus's own handler stores one)."""
    topic = unique("exhaustbig")
    url = f"{nats_url}{'&' if '?' in nats_url else '?'}mode=jetstream"
    transport = NATSTransport.from_url(url, stream_prefix=stream_prefix)
    async with MessageBus.from_url(url, stream_prefix=stream_prefix) as bus:
        dead: list[Message] = []
        await bus.subscribe(f"dlq.{topic}.>", dead.append)
        await transport.connect()
        try:
            limit = transport.capabilities.max_message_size
            assert limit
            spec = SubscriptionSpec(f"{topic}.job", group="g", max_attempts=1, ack_wait=0.5)
            sub = await transport.subscribe(spec)
            body = b"\x00" + b"y" * (limit - 300)  # fits with AMB's headers, not with the letter's
            await bus.publish(f"{topic}.job", body)
            with anyio.fail_after(10):
                await sub.__anext__()  # never settled: as if the consumer died
                await sub.__anext__()  # the spare delivery, never settled either
            async with anyio.create_task_group() as tg:
                # A waiting pull: the server checks the delivery limit when it would redeliver.
                tg.start_soon(sub.__anext__)
                await wait_until(lambda: len(dead) >= 1, 15, "the reduced dead letter")
                tg.cancel_scope.cancel()
        finally:
            await transport.aclose()
    letter = dead[0]
    assert letter.headers[H_DLQ_REASON] == "max_attempts"
    assert letter.headers[H_DLQ_TRUNCATED] == str(len(body))
    assert isinstance(letter.payload, bytes) and body.startswith(letter.payload)
    assert 0 < len(letter.payload) < limit


async def test_jetstream_publish_many_stores_each_once(nats_url: str, stream_prefix: str) -> None:
    topic = unique("many")
    transport = NATSTransport.from_url(nats_url, mode="jetstream", stream_prefix=stream_prefix)
    async with MessageBus(transport) as bus:
        got: list[Any] = []
        await bus.subscribe(f"{topic}.m", lambda m: got.append(m.payload), group="g")
        await transport.publish_many(Message(f"{topic}.m", i) for i in range(600))
        await wait_until(lambda: len(got) >= 600, 15, "600 messages")
        await anyio.sleep(0.2)
        assert sorted(got) == list(range(600))


@pytest.mark.parametrize("prefix", ["", "dlq."])
async def test_a_stream_deleted_behind_our_back_is_created_again(
    nats_url: str, stream_prefix: str, prefix: str
) -> None:
    topic = f"{prefix}{unique('gone')}"
    transport = NATSTransport.from_url(nats_url, mode="jetstream", stream_prefix=stream_prefix)
    await transport.connect()
    try:
        await transport.publish(Message(f"{topic}.x", 1))
        streams = await transport._js.streams_info()
        (name,) = [s.config.name for s in streams if s.config.name.startswith(stream_prefix)]
        await transport._js.delete_stream(name)
        await transport.publish(Message(f"{topic}.x", 2))
        assert (await transport._js.stream_info(name)).state.messages == 1
    finally:
        await transport.aclose()
