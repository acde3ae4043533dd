"""``pip install "agent-message-bus[otel]"`` gives the plugin and the OpenTelemetry API, not the SDK
and no broker driver; the plugin registers itself, and without an SDK a bus gets its Dormant layer."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import assert_only_driver, installed_distributions

pytestmark = pytest.mark.packaging

_CHECK = """
import pathlib
import anyio
import amb_otel
from amb_core import MessageBus

assert (pathlib.Path(amb_otel.__file__).parent / "py.typed").is_file(), "py.typed missing"

async def main():
    async with MessageBus() as bus:
        print(*[type(layer).__name__ for layer in bus.middleware])

anyio.run(main)
"""


def test_otel_extra_installs_the_plugin_and_the_api_only(
    fresh_venv: Callable[[str], Path],
) -> None:
    bin_dir = fresh_venv("otel")
    assert_only_driver(bin_dir, None)
    names = installed_distributions(bin_dir)
    assert {"agent-message-bus-otel", "opentelemetry-api"} <= names
    assert "opentelemetry-sdk" not in names
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", _CHECK], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["Dormant"]
