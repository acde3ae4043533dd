"""Streamed replies and gathers are traced: the request's publish, the responder's process span
covering the whole stream, a publish span per frame under it; a gather's responders each under
the one request."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry import trace

from amb_core import Message, MessageBus

from .test_tracing import one, parent_of, spans_where, wait_for_spans

pytestmark = pytest.mark.anyio
tracer = trace.get_tracer("tests")


async def test_a_stream_is_one_trace_with_a_span_per_frame(url: str, uid: str) -> None:
    async with MessageBus.from_url(url) as a, MessageBus.from_url(url) as b:

        async def words(message: Message) -> AsyncIterator[str]:
            for word in ("one", "two", "three"):
                yield word

        await b.subscribe(f"{uid}.talk", words)
        with tracer.start_as_current_span("agent") as root:
            chunks = [m.payload async for m in a.stream(f"{uid}.talk", timeout=30)]
        assert chunks == ["one", "two", "three"]
        tid = root.get_span_context().trace_id
        await wait_for_spans(lambda s: s.name == f"process {uid}.talk", 1)

    request = one(f"publish {uid}.talk", tid)
    process = one(f"process {uid}.talk", tid)
    assert parent_of(process) == request.context.span_id
    frames = spans_where(
        lambda s: (
            s.context.trace_id == tid
            and s.attributes is not None
            and s.attributes.get("amb.message.kind") == "stream_frame"
        )
    )
    assert len(frames) >= 3 and all(parent_of(f) == process.context.span_id for f in frames)
    assert len({f.attributes["amb.stream.seq"] for f in frames if f.attributes}) == len(frames)


async def test_a_gather_traces_every_responder_under_the_request(url: str, uid: str) -> None:
    async with MessageBus.from_url(url) as a, MessageBus.from_url(url) as b:
        await b.subscribe(f"{uid}.quote", lambda m: 1)
        await a.subscribe(f"{uid}.quote", lambda m: 2)
        with tracer.start_as_current_span("agent") as root:
            replies = await a.gather(f"{uid}.quote", timeout=10, max_replies=2)
        assert sorted(r.payload for r in replies) == [1, 2]
        tid = root.get_span_context().trace_id
        await wait_for_spans(lambda s: s.name == "publish (temporary)", 2)

    request = one(f"publish {uid}.quote", tid)
    processes = spans_where(
        lambda s: s.name == f"process {uid}.quote" and s.context.trace_id == tid
    )
    assert len(processes) == 2
    assert all(parent_of(p) == request.context.span_id for p in processes)
    replies_spans = spans_where(
        lambda s: (
            s.context.trace_id == tid
            and s.attributes is not None
            and s.attributes.get("amb.message.kind") == "reply"
        )
    )
    assert {parent_of(r) for r in replies_spans} == {p.context.span_id for p in processes}
