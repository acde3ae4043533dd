"""What the OpenTelemetry plugin costs, on in-memory and NATS core pub/sub.

Cases, per transport, in one process:

* plugin absent: ``MessageBus(plugin_middleware=False)`` (the core alone);
* (a) plugin installed, no SDK: the plugin's layer with the API's proxy providers (what an
  application that installs ``[otel]`` but configures nothing pays); target >= 0.9x of absent;
* (b) SDK recording every span (always-on sampler, a no-op exporter behind a simple processor) and
  every metric (an in-memory reader): the plugin with explicit providers, so that (a) stays SDK-less;
* (c) the core with the plugin switched off (``AMB_OTEL=off``: the hook registers nothing): the core
  path exactly, unchanged.

For (b), the SDK's own cost per message is measured apart (the spans, propagation and metric calls
one published-and-handled message makes, done in a loop with no bus), and the plugin's own cost is
what remains: (b) CPU per message - absent CPU per message - SDK per message.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from amb_core import InMemoryBroker, MessageBus
from amb_core.middleware import Middleware
from amb_core.plugins import registries, reset_plugins
from amb_otel import ENV_VAR, OtelMiddleware
from amb_otel.middleware import Dormant
from bench._cases import bus_pubsub

from ._report import Figure, measure, print_table

N = 50_000
PAYLOAD = {"agent": "planner", "task": "analyze", "data": "x" * 60}


class NoExport(SpanExporter):
    """Drops every span: the SDK records, nothing leaves the process."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def sdk_providers() -> tuple[TracerProvider, MeterProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(NoExport()))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


def sdk_cost_per_message(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> float:
    """Microseconds of OpenTelemetry work (SDK and API: spans with the plugin's attributes,
    inject/extract, context attach/detach, five metric calls) one published-and-handled message
    makes, without the bus: what the plugin asks of OpenTelemetry, apart from its own code."""
    tracer = tracer_provider.get_tracer("bench")
    meter = meter_provider.get_meter("bench")
    published = meter.create_counter("p")
    handled = meter.create_counter("h")
    active = meter.create_up_down_counter("a")
    duration = meter.create_histogram("d")
    attributes = {"messaging.system": "x", "messaging.destination.template": "t"}
    count = 20_000
    started = time.process_time()
    for i in range(count):
        span = tracer.start_span(
            "publish bench.otel",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "x",
                "messaging.destination.name": "bench.otel",
                "messaging.message.id": str(i),
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "amb.message.kind": "message",
            },
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        published.add(1, attributes)
        span.end()
        parent = propagate.extract(carrier)
        process = tracer.start_span(
            "process bench.otel",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "x",
                "messaging.destination.name": "bench.otel",
                "messaging.destination.template": "bench.otel",
                "messaging.message.id": str(i),
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "amb.attempt": 1,
            },
        )
        token = context.attach(trace.set_span_in_context(process, parent))
        active.add(1, attributes)
        handled.add(1, attributes)
        active.add(-1, attributes)
        duration.record(0.001, attributes)
        context.detach(token)
        process.end()
    return (time.process_time() - started) / count * 1e6


async def cases(label: str, make: Any, topic: str) -> list[Figure]:
    """The four cases on one transport (``make(**bus_options)`` makes a bus)."""
    figures = []

    async def run(name: str, **options: Any) -> Figure:
        async with make(**options) as bus:
            return await measure(f"{label}: {name}", N, lambda: bus_pubsub(bus, topic, N, PAYLOAD))

    absent = await run("plugin absent", plugin_middleware=False)
    figures.append(absent)
    async with make() as bus:
        assert [type(m) for m in bus.middleware] == [Dormant], bus.middleware  # no SDK
    figures.append(await run("(a) plugin, no SDK"))
    tracer_provider, meter_provider = sdk_providers()
    layer: Middleware = OtelMiddleware(tracer_provider, meter_provider)
    figures.append(
        await run("(b) plugin, SDK records all", plugin_middleware=False, middleware=[layer])
    )
    os.environ[ENV_VAR] = "off"
    reset_plugins()
    try:
        assert registries().middleware.layers == []
        figures.append(await run("(c) core, plugin switched off"))
    finally:
        del os.environ[ENV_VAR]
        reset_plugins()
    print_table(f"{label} pub/sub, {N:,} messages, median of 3", figures, absent)
    sdk = sdk_cost_per_message(tracer_provider, meter_provider)
    own = figures[2].cpu_us - absent.cpu_us - sdk
    print(
        f"(b) costs {figures[2].cpu_us - absent.cpu_us:.1f} us CPU a message over absent: OpenTelemetry's"
        f" own work {sdk:.1f} us (2 spans, inject/extract, 5 metric calls), the plugin's {own:.1f} us"
    )
    return figures


async def amain() -> None:
    print("Machine: 2 cores shared with other work; figures vary by +-10 % between runs.")
    assert trace.get_tracer_provider().__class__.__name__ == "ProxyTracerProvider"
    await cases("memory", lambda **o: MessageBus(InMemoryBroker(), **o), "bench.otel")
    try:
        from .bench_nats import _server_url
    except ImportError as exc:
        print(f"\n# NATS: skipped ({exc})")
        return
    url, server = _server_url()
    try:
        await cases("NATS core", lambda **o: MessageBus.from_url(url, **o), "bench.otel")
    finally:
        if server is not None:
            server.close()


def main() -> None:
    asyncio.run(amain())


if __name__ == "__main__":
    main()
