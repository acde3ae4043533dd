"""The OpenTelemetry SDK with in-memory exporters, installed once for the process, and a bus URL
per backend: memory (a named hub per test), and the real brokers through the backend test folders'
own fixtures (Redis and NATS at 127.0.0.1 or their ``AMB_*_URL``; Tansu and moto started by the
fixtures). A missing broker skips, or fails under ``CI=true`` (the fixtures' ``skip_or_fail``).
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from amb_core.testing.servers import skip_or_fail
from tests.nats.conftest import nats_url  # noqa: F401  (fixtures reused, not copied)
from tests.redis.conftest import redis_url  # noqa: F401

SPANS = InMemorySpanExporter()
METRICS = InMemoryMetricReader()
_tracer_provider = TracerProvider()
_tracer_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_tracer_provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[METRICS]))

BACKENDS = ["memory", "redis", "nats", "kafka", "sqs"]

if importlib.util.find_spec("amb_kafka") is not None:
    from tests.kafka.conftest import kafka_url  # noqa: F401
if importlib.util.find_spec("amb_sqs") is not None:
    from tests.sqs.conftest import (  # noqa: F401
        _cleanup_shared_endpoint,
        moto_server,
        namespace_url,
        sqs_base_url,
        sqs_url,
    )


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL two buses share, on each backend."""
    name = request.param
    if name == "memory":
        yield f"memory://otel-{uuid.uuid4().hex[:8]}"
    elif importlib.util.find_spec(f"amb_{name}") is None:
        skip_or_fail(f"amb_{name} is not installed")
    else:
        yield request.getfixturevalue(f"{name}_url")


@pytest.fixture
def uid() -> str:
    """A topic segment of this test alone."""
    return f"o{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def _clear_spans() -> None:
    SPANS.clear()
