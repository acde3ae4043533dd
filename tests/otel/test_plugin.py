"""The plugin's switches and its log correlation (memory only: nothing broker-specific)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from opentelemetry import trace

from amb_core import Message, MessageBus
from amb_core.plugins import registries, reset_plugins
from amb_otel import ENV_VAR, OtelMiddleware, TraceContextFilter

from .conftest import SPANS

pytestmark = pytest.mark.anyio


def test_the_entry_point_registers_one_layer() -> None:
    reset_plugins()
    try:
        layers = registries().middleware.layers
        assert [type(layer) for layer in layers] == [OtelMiddleware]
    finally:
        reset_plugins()


def test_amb_otel_off_registers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "off")
    reset_plugins()
    try:
        assert registries().middleware.layers == []
    finally:
        monkeypatch.delenv(ENV_VAR)
        reset_plugins()


async def test_plugin_middleware_false_leaves_tracing_out(uid: str) -> None:
    async with MessageBus(plugin_middleware=False) as bus:
        assert bus.middleware == []
        await bus.publish(f"{uid}.quiet", 1)
    assert not [s for s in SPANS.get_finished_spans() if uid in s.name]


async def test_amb_logs_carry_trace_and_span_ids(
    uid: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="amb")
    seen: list[tuple[str, str]] = []
    done = anyio.Event()

    async def handler(message: Message) -> None:
        logging.getLogger("amb.app").info("handling %s", message.id)
        context = trace.get_current_span().get_span_context()
        seen.append((format(context.trace_id, "032x"), format(context.span_id, "016x")))
        done.set()

    reset_plugins()
    async with MessageBus() as bus:
        await bus.subscribe(f"{uid}.log", handler)
        await bus.publish(f"{uid}.log", 1)
        with anyio.fail_after(10):
            await done.wait()
    (record,) = [r for r in caplog.records if r.name == "amb.app"]
    assert (record.otelTraceID, record.otelSpanID) == seen[0]
    other = logging.getLogger("elsewhere").makeRecord("elsewhere", 20, "f", 1, "m", (), None)
    assert not hasattr(other, "otelTraceID")
    assert TraceContextFilter().filter(other) and other.otelTraceID == "0"


def test_without_an_sdk_a_bus_gets_a_layer_that_costs_nothing(tmp_path: Path) -> None:
    script = tmp_path / "no_sdk.py"
    script.write_text(
        "import anyio\n"
        "from amb_core import MessageBus\n"
        "from amb_core.middleware import overrides\n"
        "async def main():\n"
        "    async with MessageBus() as bus:\n"
        "        (layer,) = bus.middleware\n"
        "        hooks = ['on_publish', 'on_receive', 'on_request', 'on_retry', 'on_dead_letter']\n"
        "        print(type(layer).__name__, any(overrides(layer, h) for h in hooks))\n"
        "anyio.run(main)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["Dormant", "False"], done.stderr
