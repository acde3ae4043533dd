"""Connection state on an HTTP transport, against a moto server the test kills and starts again.

SQS has no connection to lose: ``RECONNECTING`` means a request failed to reach the endpoint, and
``CONNECTED`` that one got an answer again (see ``amb_sqs._liveness``). moto forgets everything when
restarted, so these tests check the state and that the transport makes requests again, in bounded
time: a publish after the restart succeeds (the topic is declared again) or raises typed, never
hangs.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from amb_core import MessageBus
from amb_core.errors import AMBError, BrokerUnavailableError
from amb_core.testing.conformance import wait_until
from amb_core.testing.servers import ServerProcess
from amb_core.transport import ConnectionState, SubscriptionSpec
from amb_sqs import SQSConnectError, SQSTransport, SQSUnavailableError

from .conftest import moto_url

pytestmark = [pytest.mark.sqs, pytest.mark.anyio]
TIMEOUT = 30.0
PUBLISH_BOUND = 15.0  # 2 attempts of connect_timeout=5 plus botocore's backoff; refused: at once


def state_of(bus: MessageBus) -> ConnectionState:
    """The bus's state, read anew (spelled as a call so that a type checker does not keep what
    an earlier assertion narrowed it to: the state changes under the test's feet)."""
    return bus.state


async def publish_after_restart(bus: MessageBus) -> None:
    """A publish once moto is back: it succeeds or raises a typed error, within the bound."""
    with anyio.fail_after(PUBLISH_BOUND):
        try:
            await bus.publish("svc.ping", "after")
        except AMBError:
            pass  # typed is what this checks; moto lost the topic, which publish declares again


async def test_a_subscriber_sees_the_endpoint_go_and_come_back(own_moto: ServerProcess) -> None:
    """The receive loops' long polls break as the endpoint dies: ``RECONNECTING`` at once, a
    publish meanwhile raises ``BrokerUnavailableError``; ``CONNECTED`` again once it answers."""
    async with MessageBus(SQSTransport(moto_url(own_moto))) as bus:
        got: list[Any] = []
        await bus.subscribe("svc.ping", lambda m: got.append(m.payload), group="pingers")
        assert bus.state is ConnectionState.CONNECTED
        await anyio.to_thread.run_sync(own_moto.kill)
        await wait_until(
            lambda: bus.state is ConnectionState.RECONNECTING, TIMEOUT, lambda: f"{bus.state}"
        )
        with anyio.fail_after(PUBLISH_BOUND), pytest.raises(BrokerUnavailableError) as caught:
            await bus.publish("svc.ping", "during")
        assert isinstance(caught.value, SQSUnavailableError)
        assert isinstance(caught.value, SQSConnectError), "still what it was before"
        await anyio.to_thread.run_sync(own_moto.start)
        await wait_until(
            lambda: bus.state is ConnectionState.CONNECTED, TIMEOUT, lambda: f"{bus.state}"
        )
        await publish_after_restart(bus)
        with anyio.fail_after(TIMEOUT):  # the subscriber reopened its queue: messages flow again
            while "again" not in got:
                await bus.publish("svc.ping", "again")
                await anyio.sleep(0.3)
    assert state_of(bus) is ConnectionState.CLOSED


async def test_a_bus_that_only_publishes_learns_it_and_recovers_by_itself(
    own_moto: ServerProcess,
) -> None:
    """No subscription, so nothing polls: the failing publish reveals the outage, and the probe
    (not a later request of the application) brings the state back to ``CONNECTED``."""
    async with MessageBus(SQSTransport(moto_url(own_moto, connect_timeout="1"))) as bus:
        await bus.publish("svc.ping", "before")
        assert bus.state is ConnectionState.CONNECTED
        await anyio.to_thread.run_sync(own_moto.kill)
        with anyio.fail_after(PUBLISH_BOUND), pytest.raises(BrokerUnavailableError):
            await bus.publish("svc.ping", "during")
        assert state_of(bus) is ConnectionState.RECONNECTING
        await anyio.to_thread.run_sync(own_moto.start)
        await wait_until(
            lambda: bus.state is ConnectionState.CONNECTED, TIMEOUT, lambda: f"{bus.state}"
        )
        await publish_after_restart(bus)
        assert bus.state is ConnectionState.CONNECTED
    assert state_of(bus) is ConnectionState.CLOSED


def probes() -> list[asyncio.Task[object]]:
    """The connection probes still running on this loop."""
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "Liveness._keep_probing"
    ]


async def test_closing_during_an_outage_leaves_it_closed_and_nothing_probing(
    own_moto: ServerProcess,
) -> None:
    """A transport closed while the endpoint is down closes its subscriptions then, with requests
    that fail (deleting a fan-out queue): they must not start a probe that outlives the transport,
    and once the endpoint is back the closed transport still says ``CLOSED``."""
    transport = SQSTransport(moto_url(own_moto, connect_timeout="1"))
    await transport.connect()
    await transport.subscribe(SubscriptionSpec("svc.ping"))
    await anyio.to_thread.run_sync(own_moto.kill)
    await wait_until(
        lambda: transport.state is ConnectionState.RECONNECTING,
        TIMEOUT,
        lambda: f"{transport.state}",
    )
    await transport.aclose()
    assert transport.state is ConnectionState.CLOSED
    assert probes() == [], "no probe outlives the transport"
    await anyio.to_thread.run_sync(own_moto.start)
    await anyio.sleep(2.5)  # proving that nothing makes the closed transport look alive
    assert transport.state is ConnectionState.CLOSED and probes() == []
