"""Faults and bad input: a killed group member, a dead or absent broker, oversized messages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import anyio
import pytest

from amb_core import MessageBus
from amb_core.errors import ConnectError, MessageTooLargeError, PublishError
from amb_core.message import Message
from amb_core.testing.conformance import wait_until
from amb_core.testing.servers import free_port
from amb_kafka import KafkaTransport

from .conftest import tansu_server, with_test_options

pytestmark = pytest.mark.anyio

CHILD = textwrap.dedent(
    """
    import sys, anyio
    from amb_core import MessageBus
    from amb_kafka import KafkaTransport

    url, topic, group, log = sys.argv[1:5]

    async def main():
        async with MessageBus(KafkaTransport(url)) as bus:
            async def slow(message):
                with open(log, "a") as out:
                    out.write(f"start {message.payload}\\n")
                await anyio.sleep(0.1)
                with open(log, "a") as out:
                    out.write(f"done {message.payload}\\n")
            await bus.subscribe(topic, slow, group=group)
            print("ready", flush=True)
            await anyio.sleep_forever()

    anyio.run(main)
    """
)


async def test_sigkilled_member_loses_nothing(kafka_url: str, tmp_path: Path) -> None:
    """A member killed with SIGKILL mid-batch: its partitions move, unhandled messages come again."""
    topic, group = f"kill{uuid.uuid4().hex[:8]}.jobs", f"kill-{uuid.uuid4().hex[:8]}"
    url = kafka_url + "&partitions=2"
    log = tmp_path / "child.log"
    child = subprocess.Popen(  # noqa: ASYNC220 - a plain child process, started once
        [sys.executable, "-c", CHILD, url, topic, group, str(log)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        async with MessageBus(KafkaTransport(url)) as bus:
            for i in range(30):
                await bus.publish(topic, i, key=f"k{i % 4}")

            def started() -> int:
                return log.read_text().count("start") if log.exists() else 0

            await wait_until(lambda: started() >= 5, 30, "the child to start handling")
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            done = {int(line.split()[1]) for line in log.read_text().splitlines() if "done" in line}
            got: list[Message] = []
            await bus.subscribe(topic, got.append, group=group)
            missing = set(range(30)) - done
            await wait_until(
                lambda: missing <= {m.payload for m in got}, 30, "the unhandled messages"
            )
            assert done | {m.payload for m in got} == set(range(30)), "nothing lost"
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


async def test_refused_connection_is_typed_bounded_and_redacted() -> None:
    url = f"kafka://agent:s3cret-pw@127.0.0.1:{free_port()}?connect_timeout=1"
    transport = KafkaTransport(url)
    assert "s3cret-pw" not in repr(transport)
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        await transport.connect()
    assert time.monotonic() - started < 5
    assert "s3cret-pw" not in str(caught.value)
    assert "***" in str(caught.value)


async def test_oversized_message_is_a_typed_publish_error(kafka_url: str) -> None:
    async with MessageBus(KafkaTransport(kafka_url + "&message.max.bytes=2000")) as bus:
        with pytest.raises(MessageTooLargeError):
            await bus.publish(f"big{uuid.uuid4().hex[:8]}", "x" * 5000)


async def test_broker_restart(tmp_path: Path) -> None:
    """Broker down: publish fails typed within the delivery timeout; back up: publishing resumes."""
    server = tansu_server().start()
    try:
        url = with_test_options(f"kafka://127.0.0.1:{server.port}") + "&message.timeout.ms=1500"
        async with MessageBus(KafkaTransport(url)) as bus:
            topic = f"restart{uuid.uuid4().hex[:8]}"
            await bus.publish(topic, "before")
            server.stop(signal.SIGKILL)
            started = time.monotonic()
            with pytest.raises(PublishError):
                await bus.publish(topic, "while down")
            assert time.monotonic() - started < 10
            server.start()
            got: list[Message] = []
            await bus.subscribe(topic, got.append)
            with anyio.fail_after(30):
                while True:
                    try:
                        await bus.publish(topic, "after")
                        break
                    except PublishError:
                        await anyio.sleep(0.2)
            await wait_until(lambda: any(m.payload == "after" for m in got), 30, "after restart")
    finally:
        server.close()


def test_every_publish_is_bounded_by_default() -> None:
    """librdkafka's own default would let a publish wait five minutes for a broker that is gone
    (a publish in flight during a restart blocked for over 400 s): AMB bounds it at 15 s."""
    assert KafkaTransport("kafka://h:1").config.producer()["message.timeout.ms"] == 15_000
    conf = KafkaTransport("kafka://h:1?publish_timeout=2.5").config.producer()
    assert conf["message.timeout.ms"] == 2500


async def test_publish_across_a_restart_is_typed_bounded_and_recovers() -> None:
    """kill -9 of the broker (memory storage: it forgets the idempotent producer's id too): the
    transport says RECONNECTING, a publish meanwhile raises BrokerUnavailableError within
    publish_timeout (not an endless wait), and once the broker is back the same bus publishes
    again (a fatally failed producer is replaced by itself) and says CONNECTED."""
    from amb_core import BrokerUnavailableError, ConnectionState

    server = tansu_server().start()
    try:
        url = with_test_options(f"kafka://127.0.0.1:{server.port}") + "&publish_timeout=2"
        async with MessageBus(KafkaTransport(url)) as bus:
            topic = f"bounded{uuid.uuid4().hex[:8]}"
            await bus.publish(topic, "before")
            server.kill()
            # librdkafka sees the closed connections at once (~10 ms measured): error_cb
            await wait_until(lambda: bus.state is ConnectionState.RECONNECTING, 5, "RECONNECTING")
            started = time.monotonic()
            with pytest.raises(BrokerUnavailableError):
                await bus.publish(topic, "while down")
            assert time.monotonic() - started < 2 + 3, "bounded by publish_timeout"
            server.start()
            got: list[Message] = []
            await bus.subscribe(topic, got.append)
            failures = 0
            with anyio.fail_after(60):
                while True:
                    try:
                        await bus.publish(topic, "after")
                        break
                    except PublishError:
                        failures += 1
                        await anyio.sleep(0.2)
            assert failures <= 3, f"{failures} publishes failed after the broker was back"
            await wait_until(lambda: any(m.payload == "after" for m in got), 30, "after restart")
            await wait_until(lambda: bus.state is ConnectionState.CONNECTED, 20, "CONNECTED")
    finally:
        server.close()


async def test_a_hung_broker_is_reconnecting_once_a_publish_times_out() -> None:
    """A broker that hangs (SIGSTOP: its connections stay open, nothing answers) drops no
    connection, so librdkafka reports nothing until its socket.timeout.ms (60 s; 67 s measured
    on an idle bus). A publish that times out says it sooner: it raises KafkaUnavailableError
    within publish_timeout and the transport is RECONNECTING from that moment; once the broker
    answers again, CONNECTED. (A crashed broker, kill -9, is RECONNECTING within ~10 ms through
    error_cb: see the test above.)"""
    from amb_core import BrokerUnavailableError, ConnectionState

    server = tansu_server().start()
    assert server.proc is not None
    pid = server.proc.pid
    try:
        url = with_test_options(f"kafka://127.0.0.1:{server.port}") + "&publish_timeout=2"
        async with MessageBus(KafkaTransport(url)) as bus:
            topic = f"hung{uuid.uuid4().hex[:8]}"
            await bus.publish(topic, "before")
            os.kill(pid, signal.SIGSTOP)
            started = time.monotonic()
            with pytest.raises(BrokerUnavailableError):
                await bus.publish(topic, "while hung")
            assert time.monotonic() - started < 2 + 3, "bounded by publish_timeout"
            assert bus.state is ConnectionState.RECONNECTING, "known as soon as the publish failed"
            os.kill(pid, signal.SIGCONT)
            await wait_until(lambda: bus.state is ConnectionState.CONNECTED, 30, "CONNECTED")
    finally:
        os.kill(pid, signal.SIGCONT)
        server.close()
