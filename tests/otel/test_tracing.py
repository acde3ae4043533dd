"""One trace across two buses on every backend: publish → handle → request → reply, and a poison
message's retries and dead letter, with the SDK's in-memory exporter (real brokers, no mocks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from amb_core import Message, MessageBus, RetryPolicy
from amb_core.testing.conformance import wait_until

from .conftest import SPANS

pytestmark = pytest.mark.anyio
tracer = trace.get_tracer("tests")


def spans_where(predicate: Callable[[ReadableSpan], bool]) -> list[ReadableSpan]:
    return [s for s in SPANS.get_finished_spans() if predicate(s)]


async def wait_for_spans(predicate: Callable[[ReadableSpan], bool], count: int) -> list[Any]:
    await wait_until(
        lambda: len(spans_where(predicate)) >= count,
        60,
        lambda: f"spans so far: {[s.name for s in SPANS.get_finished_spans()]}",
    )
    return spans_where(predicate)


def one(name: str, trace_id: int) -> ReadableSpan:
    found = spans_where(lambda s: s.name == name and s.context.trace_id == trace_id)
    assert len(found) == 1, (name, [s.name for s in SPANS.get_finished_spans()])
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


async def test_publish_handle_request_reply_is_one_trace(url: str, uid: str) -> None:
    done = anyio.Event()
    async with MessageBus.from_url(url) as a, MessageBus.from_url(url) as b:
        answer = a.subscribe(f"{uid}.ask", lambda m: {"n": m.payload["n"] + 1})

        async def work(message: Message) -> None:
            reply = await b.request(f"{uid}.ask", {"n": message.payload}, timeout=30)
            assert reply.payload == {"n": 2}
            done.set()

        worker = b.subscribe(f"{uid}.jobs.*", work, group="workers")
        await answer
        await worker
        with tracer.start_as_current_span("agent") as root:
            await a.publish(f"{uid}.jobs.work", 1)
        with anyio.fail_after(60):
            await done.wait()
        tid = root.get_span_context().trace_id
        await wait_for_spans(lambda s: s.name == "publish (temporary)", 1)
        system = a.transport.scheme if a.transport.scheme != "sqs" else "aws_sqs"
        if system == "memory":
            system = "amb_memory"

    publish = one(f"publish {uid}.jobs.work", tid)
    process = one(f"process {uid}.jobs.*", tid)
    request = one(f"request {uid}.ask", tid)
    request_publish = one(f"publish {uid}.ask", tid)
    answer_process = one(f"process {uid}.ask", tid)
    reply = one("publish (temporary)", tid)
    # every span of the conversation is in the one trace, in this order of parents
    assert parent_of(publish) == root.get_span_context().span_id
    assert parent_of(process) == publish.context.span_id
    assert parent_of(request) == process.context.span_id
    assert parent_of(request_publish) == request.context.span_id
    assert parent_of(answer_process) == request_publish.context.span_id
    assert parent_of(reply) == answer_process.context.span_id
    assert [link.context.span_id for link in reply.links] == [answer_process.context.span_id]
    # the request span covers the round trip
    assert request.start_time <= request_publish.start_time
    assert request.end_time >= reply.start_time
    assert (publish.kind, process.kind, request.kind) == (
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
        SpanKind.CLIENT,
    )
    assert publish.attributes is not None and process.attributes is not None
    assert publish.attributes["messaging.system"] == system
    assert publish.attributes["messaging.destination.name"] == f"{uid}.jobs.work"
    assert publish.attributes["messaging.operation.type"] == "send"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.destination.template"] == f"{uid}.jobs.*"
    assert process.attributes["messaging.consumer.group.name"] == "workers"
    assert process.attributes["messaging.message.id"] == publish.attributes["messaging.message.id"]
    assert reply.attributes is not None and reply.attributes["messaging.destination.temporary"]


async def test_poison_message_shows_retries_and_dead_letter(url: str, uid: str) -> None:
    retry = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.2, jitter=0)
    async with MessageBus.from_url(url) as a, MessageBus.from_url(url, retry=retry) as b:

        def poison(message: Message) -> None:
            raise ValueError("cannot digest")

        await b.subscribe(f"{uid}.poison", poison, group="eaters")
        with tracer.start_as_current_span("agent") as root:
            await a.publish(f"{uid}.poison", "x")
        tid = root.get_span_context().trace_id
        await wait_for_spans(lambda s: s.name == f"publish dlq.{uid}.poison", 1)

    attempts = sorted(
        spans_where(lambda s: s.name == f"process {uid}.poison" and s.context.trace_id == tid),
        key=lambda s: s.start_time or 0,
    )
    assert [s.attributes["amb.attempt"] for s in attempts if s.attributes] == [1, 2, 3]
    for span in attempts:
        assert span.status.status_code is StatusCode.ERROR
        assert "exception" in [e.name for e in span.events]
    retries = [e for s in attempts[:2] for e in s.events if e.name == "amb.retry"]
    assert [e.attributes["amb.attempt"] for e in retries if e.attributes] == [1, 2]
    (last,) = [e for e in attempts[2].events if e.name == "amb.dead_letter"]
    assert (
        last.attributes is not None and last.attributes["amb.dead_letter.reason"] == "max_attempts"
    )
    dead = one(f"dead_letter {uid}.poison", tid)
    assert dead.status.status_code is StatusCode.ERROR
    assert dead.attributes is not None
    assert dead.attributes["amb.dead_letter.reason"] == "max_attempts"
    assert dead.attributes["amb.dead_letter.attempts"] == 3
    assert parent_of(dead) == attempts[2].context.span_id
    stored = one(f"publish dlq.{uid}.poison", tid)
    assert parent_of(stored) == dead.context.span_id
