"""Faults against a real endpoint: refused connections and refused credentials fail fast and typed
with secrets redacted, a consumer SIGKILLed mid-handler gets its message redelivered, bytes another
program sent straight to a queue take the dead-letter path, and an endpoint restart is survived."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from typing import Any

import anyio
import pytest

from amb_core import Message, MessageBus
from amb_core.deadletter import H_DLQ_REASON
from amb_core.errors import AuthenticationError, ConnectError, MessageTooLargeError
from amb_core.testing.conformance import FAST_RETRY, wait_until
from amb_core.testing.servers import ServerProcess, free_port
from amb_core.transport import SubscriptionSpec
from amb_sqs import SQSAuthenticationError, SQSConnectError, SQSTransport, sweep_redriven
from amb_sqs.naming import group_queue_name

from .conftest import DUMMY_AWS, moto_url, start_moto, with_namespace

pytestmark = [pytest.mark.sqs, pytest.mark.anyio]
TIMEOUT = 30.0


async def test_refused_endpoint_is_a_typed_error_in_bounded_time() -> None:
    url = f"sqs://?region=us-east-1&endpoint=http://127.0.0.1:{free_port()}&connect_timeout=1"
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        await MessageBus(SQSTransport(url)).connect()
    assert time.monotonic() - started < 10
    assert isinstance(caught.value, SQSConnectError)
    assert "127.0.0.1" in str(caught.value)


async def test_an_endpoint_that_never_answers_is_a_typed_error_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A socket that takes connections and never answers (a hung endpoint): ``connect()`` gives
    up after its bound (``3 x connect_timeout + 1`` s), typed, rather than after botocore's read
    timeouts and retries."""
    for key, value in DUMMY_AWS.items():
        monkeypatch.setenv(key, value)
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        port = hung.getsockname()[1]
        url = f"sqs://?region=us-east-1&endpoint=http://127.0.0.1:{port}&connect_timeout=1&wait=5"
        started = time.monotonic()
        with pytest.raises(SQSConnectError, match="no answer within 4s"):
            await SQSTransport(url).connect()
        assert time.monotonic() - started < 8


async def test_bad_credentials_are_typed_and_redacted(
    moto_server: ServerProcess | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if moto_server is None:
        pytest.skip("needs the local moto server with IAM checks on")
    secret = "s3cr3t-never-in-logs"
    server = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})  # moto checks signatures
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        transport = SQSTransport(moto_url(server))
        started = time.monotonic()
        with pytest.raises(AuthenticationError) as caught:
            await transport.connect()
        assert time.monotonic() - started < 10
        assert isinstance(caught.value, SQSAuthenticationError)
        assert secret not in str(caught.value) and secret not in repr(transport)
    finally:
        server.close()


async def test_missing_credentials_are_an_authentication_error(
    sqs_base_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    with pytest.raises(AuthenticationError, match="standard AWS chain"):
        await SQSTransport(with_namespace(sqs_base_url, "nocreds")).connect()


async def test_message_over_256_kib_is_refused_at_publish(sqs_url: str) -> None:
    async with MessageBus(SQSTransport(sqs_url)) as bus:
        with pytest.raises(MessageTooLargeError) as caught:
            await bus.publish("big.one", "x" * 262_144)
        assert caught.value.limit == 262_144 and caught.value.topic == "big.one"
        await bus.publish("big.one", "x" * 200_000)  # under the limit: taken


async def test_foreign_messages_sent_to_the_queue_go_to_the_dlq_path(sqs_url: str) -> None:
    async with MessageBus(SQSTransport(sqs_url), retry=FAST_RETRY) as bus:
        transport = bus.transport
        assert isinstance(transport, SQSTransport)
        handled: list[Message] = []
        await bus.subscribe("orders.new", handled.append, group="shop")
        dead: list[Message] = []
        await bus.subscribe("dlq.orders.>", dead.append)
        name = group_queue_name(transport.config.namespace, "shop", "orders.new", False)
        queue = (await transport.sqs.get_queue_url(QueueName=name))["QueueUrl"]
        await transport.sqs.send_message(QueueUrl=queue, MessageBody="<xml>not json</xml>")
        await transport.sqs.send_message(QueueUrl=queue, MessageBody='{"sku": 7}')
        await wait_until(lambda: len(dead) == 1 and len(handled) == 1, TIMEOUT, "both")
        assert dead[0].headers[H_DLQ_REASON] == "undecodable"
        assert dead[0].payload == b"<xml>not json</xml>"
        assert handled[0].payload == {"sku": 7} and handled[0].topic == "orders.new"
        await transport.delete_group("orders.new", "shop")


CONSUMER = textwrap.dedent(
    """
    import asyncio, sys
    from amb_core import MessageBus
    from amb_sqs import SQSTransport

    async def main(url):
        async with MessageBus(SQSTransport(url)) as bus:
            async def hang(message):
                print("started", message.payload, flush=True)
                await asyncio.sleep(3600)
            await bus.subscribe("jobs.run", hang, group="workers", ack_wait=1)
            print("ready", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1]))
    """
)


async def read_line(proc: subprocess.Popen[str]) -> str:
    """The child's next stdout line, failing the test (and killing the child) after TIMEOUT."""
    assert proc.stdout is not None
    with anyio.fail_after(TIMEOUT):
        return await anyio.to_thread.run_sync(proc.stdout.readline, abandon_on_cancel=True)


async def test_consumer_killed_mid_handler_gets_its_message_redelivered(sqs_url: str) -> None:
    proc = subprocess.Popen(  # noqa: ASYNC220 - read from a worker thread below
        [sys.executable, "-c", CONSUMER, sqs_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert proc.stdout is not None
        line = await read_line(proc)
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
        async with MessageBus(SQSTransport(sqs_url)) as bus:
            await bus.publish("jobs.run", "precious")
            line = await read_line(proc)
            assert line.strip() == "started precious"
            proc.kill()
            proc.wait()
            got: list[Message] = []
            await bus.subscribe("jobs.run", got.append, group="workers", ack_wait=1)
            await wait_until(lambda: len(got) == 1, TIMEOUT, "the redelivery")
            assert got[0].payload == "precious" and got[0].attempt >= 2
            transport = bus.transport
            assert isinstance(transport, SQSTransport)
            await transport.delete_group("jobs.run", "workers")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_endpoint_restart_is_survived(own_moto: ServerProcess) -> None:
    """moto keeps its state in memory, so a restart loses topic and queues: the transport declares
    them again, and the subscriber reopens its subscription by itself."""
    async with MessageBus(SQSTransport(moto_url(own_moto)), retry=FAST_RETRY) as bus:
        got: list[Any] = []
        await bus.subscribe("svc.ping", lambda m: got.append(m.payload), group="pingers")
        await bus.publish("svc.ping", 1)
        await wait_until(lambda: got == [1], TIMEOUT, "before the restart")
        await anyio.to_thread.run_sync(own_moto.restart)

        with anyio.fail_after(TIMEOUT):  # published until the reopened subscription has one
            while 2 not in got:
                await bus.publish("svc.ping", 2)
                await anyio.sleep(0.3)


async def test_native_redrive_reaches_the_bus_dead_letters(namespace_url: Any) -> None:
    """A message whose consumer never settles it is moved to the DLQ queue by SQS after
    ``max_attempts + redrive_margin`` receives; sweeping turns it into an ordinary dead letter."""
    url = namespace_url(redrive_margin="1")
    async with MessageBus(SQSTransport(url), retry=FAST_RETRY) as bus:
        transport = bus.transport
        assert isinstance(transport, SQSTransport)
        dead: list[Message] = []
        await bus.subscribe("dlq.pay.>", dead.append)
        spec = SubscriptionSpec("pay.card", group="payers", max_attempts=1, ack_wait=1)
        source = await transport.subscribe(spec)  # maxReceiveCount = 1 + 1
        await bus.publish("pay.card", {"amount": 5})
        with anyio.fail_after(TIMEOUT):
            for _ in range(2):  # delivered, never settled (a consumer that keeps dying)
                delivery = await source.__anext__()
                await delivery.nack(0)
        assert await sweep_redriven(bus, idle=1.5) == 1
        await wait_until(lambda: len(dead) == 1, TIMEOUT, "the swept dead letter")
        assert dead[0].payload == {"amount": 5}
        assert dead[0].headers[H_DLQ_REASON] == "max_attempts"
        assert dead[0].headers["amb-dlq-topic"] == "pay.card"
        await source.aclose()
        await transport.delete_group("pay.card", "payers")


async def test_dead_letters_are_archived_listed_and_replayed(sqs_url: str) -> None:
    """Every dlq.* message also lands in the namespace's archive queue, which serves
    ``start="earliest"`` on dead-letter patterns (the ``dead_letter_replay`` capability, while
    ordinary topics cannot be replayed): ``bus.dead_letters`` lists and replays them."""
    transport = SQSTransport(sqs_url)
    assert transport.capabilities.dead_letter_replay and not transport.capabilities.replay
    async with MessageBus(transport, retry=FAST_RETRY) as bus:
        fail = True
        handled: list[Any] = []

        async def sometimes(message: Message) -> None:
            if fail:
                raise RuntimeError("down")
            handled.append(message.payload)

        await bus.subscribe("job.run", sometimes)
        watch: list[Message] = []
        await bus.subscribe("dlq.job.>", watch.append)
        await bus.publish("other.thing", "unrelated")
        await bus.publish("dlq.other.thing", "an unrelated dead letter")
        for i in range(3):
            await bus.publish("job.run", i)
        await wait_until(lambda: len(watch) == 3, TIMEOUT, "three dead letters")
        listed = await bus.dead_letters.list("job.>", idle=1.5)
        assert sorted(m.payload for m in listed) == [0, 1, 2]
        assert sorted(m.payload for m in await bus.dead_letters.list("job.>", idle=1.5)) == [
            0,
            1,
            2,
        ], "listing only looks"
        fail = False
        assert await bus.dead_letters.replay("job.>", idle=1.5) == 3
        await wait_until(lambda: sorted(handled) == [0, 1, 2], TIMEOUT, "replayed messages")
        assert await bus.dead_letters.replay("job.>", idle=1.5) == 0, "replayed once"
        others = await bus.dead_letters.list("other.>", idle=1.5)
        assert [m.payload for m in others] == ["an unrelated dead letter"]


async def test_delete_namespace_removes_its_topic_and_queues(
    sqs_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Everything goes, and quietly: a fan-out queue its subscription deleted on the way is
    already gone, which is no failure to warn about."""
    caplog.set_level(logging.WARNING, logger="amb.sqs")
    async with MessageBus(SQSTransport(sqs_url)) as bus:
        await bus.subscribe("a.b", print, group="keep")
        await bus.subscribe("a.>", print)
        transport = bus.transport
        assert isinstance(transport, SQSTransport)
        ns = transport.config.namespace
        # group, fan-out, DLQ and archive queues
        assert await transport.delete_namespace() == 4
        left = await transport.sqs.list_queues(QueueNamePrefix=f"{ns}-")
        assert left.get("QueueUrls", []) == []
        topics = await transport.sns.list_topics()
        assert transport.topic_arn not in [t["TopicArn"] for t in topics.get("Topics", [])]
        assert [r.getMessage() for r in caplog.records if r.name == "amb.sqs"] == []


async def test_a_handler_slower_than_ack_wait_causes_no_duplicate(sqs_url: str) -> None:
    """The heartbeat keeps a held message invisible while its handler runs past ``ack_wait``."""
    async with (
        MessageBus(SQSTransport(sqs_url)) as one,
        MessageBus(SQSTransport(sqs_url)) as two,
    ):
        calls: list[int] = []

        async def slow(message: Message) -> None:
            calls.append(message.attempt)
            await anyio.sleep(2.5)

        for bus in (one, two):
            await bus.subscribe("llm.call", slow, group="thinkers", ack_wait=1)
        await one.publish("llm.call", "long prompt")
        await wait_until(lambda: len(calls) == 1, TIMEOUT, "the first call")
        await anyio.sleep(3.5)
        assert calls == [1], "no member got it again while the first was still working"
