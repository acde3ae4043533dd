"""Metric counts match the messages sent, on every backend (the SDK's in-memory reader)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from amb_core import Message, MessageBus, RetryPolicy
from amb_core.testing.conformance import wait_until

from .conftest import METRICS

pytestmark = pytest.mark.anyio


def points(name: str, **attributes: Any) -> list[Any]:
    """The data points of metric ``name`` whose attributes include ``attributes``."""
    data = METRICS.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found += [
                        p
                        for p in metric.data.data_points
                        if all(p.attributes.get(k) == v for k, v in attributes.items())
                    ]
    return found


def total(name: str, **attributes: Any) -> float:
    return sum(p.value for p in points(name, **attributes))


async def test_counts_match_the_messages_sent(url: str, uid: str) -> None:
    sent = 5
    pattern = f"{uid}.orders.*"
    retry = RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.1, jitter=0)
    async with MessageBus.from_url(url) as a, MessageBus.from_url(url, retry=retry) as b:
        handled = 0
        done = anyio.Event()

        async def handle(message: Message) -> None:
            nonlocal handled
            if message.payload == "poison":
                raise ValueError("bad order")
            handled += 1
            if handled == sent:
                done.set()

        await b.subscribe(pattern, handle, group="billing")
        await b.subscribe(f"{uid}.ask", lambda m: "yes")
        published_before = total("amb.messages.published", **{"amb.message.kind": "message"})
        for i in range(sent):
            await a.publish(f"{uid}.orders.o{i}", i)
        await a.publish(f"{uid}.orders.bad", "poison")
        assert (await a.request(f"{uid}.ask", timeout=30)).payload == "yes"
        with anyio.fail_after(60):
            await done.wait()
        where = {"messaging.destination.template": pattern}
        await wait_until(
            lambda: total("amb.messages.dead_lettered", **where) >= 1, 60, "a dead letter"
        )
        system = a.middleware[0]._system  # type: ignore[attr-defined]

    where = {"messaging.destination.template": pattern, "messaging.consumer.group.name": "billing"}
    assert total("amb.messages.handled", **where) == sent
    assert total("amb.messages.failed", **where) == 2  # the poison, twice
    assert total("amb.messages.retried", **where) == 1
    dead = points("amb.messages.dead_lettered", **where)
    assert [(p.value, p.attributes["amb.dead_letter.reason"]) for p in dead] == [
        (1, "max_attempts")
    ]
    assert total("amb.handlers.active", **where) == 0
    (durations,) = points("amb.handler.duration", **where)
    assert durations.count == sent + 2
    published = total("amb.messages.published", **{"amb.message.kind": "message"})
    assert published - published_before >= sent + 1  # other tests may publish meanwhile
    assert all(
        p.attributes["messaging.system"] == system for p in points("amb.messages.handled", **where)
    )
    assert sum(p.count for p in points("amb.request.duration", **{"messaging.system": system})) >= 1
