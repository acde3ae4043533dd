"""Faults against real Redis processes: restarts under load, a consumer killed mid-handler, foreign
bytes, refused connections and bad credentials."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from amb_core import MessageBus
from amb_core.deadletter import H_DLQ_REASON, RetryPolicy
from amb_core.errors import AuthenticationError, ConnectError
from amb_core.message import Message
from amb_core.testing.conformance import wait_until
from amb_core.testing.servers import ServerProcess, free_port
from amb_redis import RedisAuthenticationError, RedisConnectError, RedisTransport
from tests import hanging_consumer

from .conftest import redis_binary, redis_ping

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


async def _restart(server: ServerProcess, down: float) -> None:
    await anyio.to_thread.run_sync(server.kill)  # a crash: no shutdown save
    await anyio.sleep(down)
    await anyio.to_thread.run_sync(server.start)


async def test_streams_survive_a_redis_crash_under_load(redis_server: ServerProcess) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}"
    published: list[int] = []
    got: set[int] = set()

    async def handle(message: Message) -> None:
        got.add(message.payload)

    async with (
        MessageBus(RedisTransport(url, publish_timeout=15)) as publisher,
        MessageBus(RedisTransport(url)) as consumer,
    ):
        await consumer.subscribe("load.work", handle, group="workers")

        async def produce() -> None:
            for i in range(1500):
                await publisher.publish("load.work", i)
                published.append(i)  # acknowledged as published
                if i % 50 == 0:
                    await anyio.sleep(0.005)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            await wait_until(lambda: len(published) > 300, 20, "publishing to start")
            await _restart(redis_server, 0.5)
        assert len(published) == 1500, "publishes retried through the restart"
        await wait_until(lambda: got >= set(published), 30, "every published message")


async def test_pubsub_reconnects_after_a_restart(redis_server: ServerProcess) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}?mode=pubsub"
    got: list[Any] = []
    async with MessageBus(RedisTransport(url)) as bus:
        await bus.subscribe("ev.*", got.append)
        await bus.publish("ev.a", "before")
        await wait_until(lambda: len(got) == 1, 10, "the first event")
        await _restart(redis_server, 0.3)

        async def probe() -> bool:  # at most once: keep publishing until one gets through
            await bus.publish("ev.b", "after")
            return any(m.payload == "after" for m in got)

        deadline = time.monotonic() + 15
        while not await probe():
            assert time.monotonic() < deadline, "no delivery after the restart"
            await anyio.sleep(0.1)


async def test_killed_consumer_hands_its_message_to_the_group(
    redis_url: str, namespace: str
) -> None:
    topic, group = "jobs.kill", "killers"
    sep = "&" if "?" in redis_url else "?"
    child = hanging_consumer.spawn(f"{redis_url}{sep}namespace={namespace}", topic, group)
    try:
        assert child.stdout is not None
        line = await anyio.to_thread.run_sync(child.stdout.readline)
        assert line.strip() == "READY", child.stderr.read() if child.stderr else line
        async with MessageBus(RedisTransport(redis_url, namespace=namespace)) as bus:
            await bus.publish(topic, "precious")
            line = await anyio.to_thread.run_sync(child.stdout.readline)
            assert line.startswith("STARTED precious")
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            got: list[Message] = []
            started = time.monotonic()
            await bus.subscribe(topic, got.append, group=group, ack_wait=1.0)
            await wait_until(lambda: len(got) == 1, 15, "the dead consumer's message")
            assert got[0].payload == "precious" and got[0].attempt >= 2
            assert time.monotonic() - started < 5, "claimed after about ack_wait"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_foreign_entries_are_understood_or_dead_lettered(
    redis_url: str, namespace: str
) -> None:
    retry = RetryPolicy(max_attempts=1)
    async with MessageBus(RedisTransport(redis_url, namespace=namespace), retry=retry) as bus:
        handled: list[Message] = []
        dead: list[Message] = []
        await bus.subscribe("ext.in", handled.append)
        await bus.subscribe("dlq.ext.>", dead.append)
        raw = aioredis.Redis.from_url(redis_url)
        try:
            key = f"{namespace}:ext.in"
            await raw.xadd(key, {"body": b'{"n": 1}', "trace": "t-9"})
            await raw.xadd(key, {"data": b"no body field"})
            await raw.xadd(key, {"body": b"\xff\xfe", "content-type": "application/json"})
        finally:
            await raw.aclose()
        await wait_until(lambda: len(handled) == 1 and len(dead) == 2, 10, "one handled, two dead")
        assert handled[0].payload == {"n": 1} and handled[0].headers == {"trace": "t-9"}
        assert {m.headers[H_DLQ_REASON] for m in dead} == {"undecodable"}


async def test_refused_connection_is_typed_and_fast() -> None:
    port = free_port()
    transport = RedisTransport(f"redis://user:hunter2@127.0.0.1:{port}", connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(RedisConnectError) as caught:
        await transport.connect()
    assert isinstance(caught.value, ConnectError)
    assert time.monotonic() - started < 3
    assert "hunter2" not in str(caught.value) and str(port) in str(caught.value)


async def test_tls_url_against_a_plain_server_fails_typed(redis_url: str) -> None:
    plain = redis_url.split("://", 1)[1].split("/")[0].split("@")[-1]
    transport = RedisTransport(f"rediss://:hunter2@{plain}", connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(RedisConnectError) as caught:
        await transport.connect()
    assert time.monotonic() - started < 3
    assert "hunter2" not in str(caught.value)


@pytest.fixture
def secured_redis() -> Any:
    binary = redis_binary()
    if binary is None:
        pytest.skip("no redis-server binary")

    def ready(port: int) -> bool:
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"-NOAUTH")

    argv = [binary, "--port", "{port}", "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--requirepass", "s3cret", "--dir", "{dir}"]
    server = ServerProcess(argv, ready, name="redis-auth").start()
    yield server
    server.close()


async def test_bad_credentials_are_typed_and_redacted(
    secured_redis: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = secured_redis.port
    for url in (
        f"redis://:wrongpass@127.0.0.1:{port}",
        f"redis://default:wrongpass@127.0.0.1:{port}",
    ):
        transport = RedisTransport(url)
        with pytest.raises(RedisAuthenticationError) as caught:
            await transport.connect()
        assert isinstance(caught.value, AuthenticationError)
        assert "wrongpass" not in str(caught.value) and "wrongpass" not in repr(transport)
    assert "wrongpass" not in caplog.text
    async with MessageBus(RedisTransport(f"redis://:s3cret@127.0.0.1:{port}")) as bus:
        got: list[Any] = []
        await bus.subscribe("auth.ok", got.append)
        await bus.publish("auth.ok", 1)
        await wait_until(lambda: got != [], 5, "a message with the right password")


def test_redis_ping_helper(redis_url: str) -> None:
    assert redis_binary() is not None or redis_ping(6379)
