"""Publishing while the NATS server is down (issue 14, defect 5), against a nats-server the test
owns and kills with SIGKILL: a publish either raises ``BrokerUnavailableError`` (at once with
``publish_timeout=0``, or after the bound) or waits for the reconnection and is then delivered;
nothing returns normally only to be flushed later to nobody. The connection's state follows:
``RECONNECTING`` while the server is down, ``CONNECTED`` once it is back, ``CLOSED`` after close."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import anyio
import pytest

from amb_core import MessageBus
from amb_core.errors import BrokerUnavailableError, PublishError
from amb_core.testing.conformance import wait_until
from amb_core.testing.servers import ServerProcess
from amb_core.transport import ConnectionState
from amb_nats.errors import NATSBrokerUnavailableError

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


def url_of(server: ServerProcess, **options: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"nats://127.0.0.1:{server.port}" + (f"?{query}" if query else "")


async def kill_and_wait(server: ServerProcess, *buses: MessageBus) -> None:
    server.kill()
    await wait_until(
        lambda: all(b.state is ConnectionState.RECONNECTING for b in buses),
        10,
        lambda: f"reconnecting: {[str(b.state) for b in buses]}",
    )


async def start_and_wait(server: ServerProcess, *buses: MessageBus) -> None:
    await anyio.to_thread.run_sync(server.start)
    await wait_until(
        lambda: all(b.state is ConnectionState.CONNECTED for b in buses),
        15,
        lambda: f"connected: {[str(b.state) for b in buses]}",
    )


async def test_publish_while_down_raises_at_once_with_publish_timeout_0(
    nats_server: ServerProcess,
) -> None:
    topic = f"down{time.monotonic_ns()}"
    publisher = MessageBus.from_url(url_of(nats_server, publish_timeout=0))
    subscriber = MessageBus.from_url(url_of(nats_server))
    async with publisher, subscriber:
        assert publisher.state is ConnectionState.CONNECTED
        got: list[Any] = []
        await subscriber.subscribe(f"{topic}.>", lambda m: got.append(m.payload))
        await subscriber.subscribe(f"{topic}.rpc", lambda m: "answer")
        await publisher.publish(f"{topic}.x", "before")
        await wait_until(lambda: got == ["before"], 10, "the first message")
        await kill_and_wait(nats_server, publisher, subscriber)
        for n in range(50):
            started = time.monotonic()
            with pytest.raises(NATSBrokerUnavailableError, match="was not sent"):
                await publisher.publish(f"{topic}.x", f"lost {n}")
            assert time.monotonic() - started < 0.5, "at once"
        with pytest.raises(BrokerUnavailableError):
            await publisher.request(f"{topic}.rpc", {}, timeout=5)
        await start_and_wait(nats_server, publisher, subscriber)
        probes = 0
        while "probe" not in got:  # until the subscriber's connection has re-subscribed too
            await publisher.publish(f"{topic}.x", "probe")
            probes += 1
            assert probes < 200, "the subscriber came back"
            await anyio.sleep(0.05)
        await publisher.publish(f"{topic}.x", "after")
        await wait_until(lambda: "after" in got, 10, "a message after the restart")
        assert (await publisher.request(f"{topic}.rpc", {}, timeout=5)).payload == "answer"
        await anyio.sleep(0.2)
        assert not [p for p in got if str(p).startswith("lost")], "a refused message never arrives"
    assert publisher.state is ConnectionState.CLOSED


async def test_publish_while_down_waits_for_the_reconnection(nats_server: ServerProcess) -> None:
    """By default a publish during the outage waits (up to ``publish_timeout``, 5 s) and is sent
    on the new connection, after its subscriptions are back: a subscriber on it gets the message."""
    topic = f"wait{time.monotonic_ns()}"
    async with MessageBus.from_url(url_of(nats_server)) as bus:
        got: list[Any] = []
        await bus.subscribe(f"{topic}.x", lambda m: got.append(m.payload))
        await kill_and_wait(nats_server, bus)
        returned: list[float] = []

        async def publish(n: int) -> None:
            await bus.publish(f"{topic}.x", n)
            returned.append(time.monotonic())

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(publish, n)
            await anyio.sleep(0.5)
            assert returned == [], "no publish returns while the server is down"
            restarted = time.monotonic()
            await start_and_wait(nats_server, bus)
        assert len(returned) == 20 and min(returned) >= restarted
        await wait_until(lambda: sorted(got) == list(range(20)), 10, lambda: f"got {got}")


@pytest.mark.parametrize("mode", ["core", "jetstream"])
async def test_the_wait_is_bounded(nats_server: ServerProcess, mode: str) -> None:
    async with MessageBus.from_url(url_of(nats_server, mode=mode, publish_timeout=0.5)) as bus:
        await bus.publish("bounded.x", "before")
        await kill_and_wait(nats_server, bus)
        started = time.monotonic()
        with pytest.raises(NATSBrokerUnavailableError, match=r"after waiting 0\.5s"):
            await bus.publish("bounded.x", "during")
        assert 0.45 <= time.monotonic() - started < 3
        await start_and_wait(nats_server, bus)
        deadline = time.monotonic() + 15
        while True:  # JetStream may answer a moment after the connection is back
            try:
                await bus.publish("bounded.x", "after")
                break
            except NATSBrokerUnavailableError:
                raise
            except Exception:
                assert time.monotonic() < deadline, "publishing works again"
                await anyio.sleep(0.1)


async def test_jetstream_publishes_in_flight_at_a_kill_raise_broker_unavailable(
    nats_server: ServerProcess,
) -> None:
    """Publishes sent before the server died wait for an acknowledgement that never comes: that
    is the outage too, so they raise ``NATSBrokerUnavailableError`` (a ``BrokerUnavailableError``,
    still a ``PublishError``), not a bare "no acknowledgement in time" ``NATSPublishError``; so do
    those begun after the kill (once ``publish_timeout`` is over). Every publish ends, typed.

    The server is stopped (SIGSTOP) and killed only once a publish was handed to the client after
    that: that one surely stays unanswered (killed while running, the server may have answered
    every publish in flight already, its acknowledgements still unread in the client's socket)."""
    topic = f"inflight{time.monotonic_ns()}.x"
    url = url_of(nats_server, mode="jetstream", publish_timeout=1)
    async with MessageBus.from_url(url) as bus:
        await bus.publish(topic, "first")  # the stream exists before the load starts
        sent = 0
        failures: list[Exception] = []
        ended = anyio.Event()

        async def publish_until_it_fails() -> None:
            nonlocal sent
            while True:
                try:
                    await bus.publish(topic, sent)
                except Exception as exc:
                    failures.append(exc)
                    if len(failures) == 50:
                        ended.set()
                    return
                sent += 1

        async with anyio.create_task_group() as tasks:
            for _ in range(49):
                tasks.start_soon(publish_until_it_fails)
            await wait_until(lambda: sent >= 500, 20, "publishing under way")
            assert nats_server.proc is not None
            client = bus.transport.current_client()  # type: ignore[attr-defined]
            os.kill(nats_server.proc.pid, signal.SIGSTOP)
            handed = client.stats["out_msgs"]
            # The 50th publisher starts now: its first publish is handed to the client after the
            # stop (the 49 may all be waiting for acknowledgements already, sending nothing new).
            tasks.start_soon(publish_until_it_fails)
            await wait_until(
                lambda: client.stats["out_msgs"] > handed, 10, "a publish after the stop"
            )
            nats_server.kill()
            with anyio.fail_after(20):  # the acknowledgement wait (5 s) plus publish_timeout
                await ended.wait()
        kinds = {f"{type(exc).__name__}: {exc}" for exc in failures}
        assert all(isinstance(exc, NATSBrokerUnavailableError) for exc in failures), kinds
        assert all(isinstance(exc, PublishError) for exc in failures)
        lost_in_flight = [exc for exc in failures if "may or may not be stored" in str(exc)]
        assert lost_in_flight, f"some publishes were in flight at the kill: {kinds}"
        await start_and_wait(nats_server, bus)
