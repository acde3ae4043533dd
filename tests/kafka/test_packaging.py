"""amb-core[kafka] installs from wheels with confluent-kafka and no other driver, and works."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import assert_only_driver

pytestmark = [pytest.mark.packaging, pytest.mark.kafka]

ROUND_TRIP = """
import sys, anyio
from amb_core import MessageBus
from amb_kafka import KafkaBroker

async def main():
    async with MessageBus.from_url(sys.argv[1]) as bus:
        got = []
        await bus.subscribe("pkgcheck.kafka", got.append)
        await bus.publish("pkgcheck.kafka", {"ok": True})
        with anyio.fail_after(30):
            while not got:
                await anyio.sleep(0.01)
        assert type(bus.transport) is KafkaBroker
        print(type(bus.transport).__name__, got[0].payload)

anyio.run(main)
"""


def test_kafka_extra_installs_and_is_discovered(
    fresh_venv: Callable[[str], Path], kafka_url: str
) -> None:
    bin_dir = fresh_venv("kafka")
    assert_only_driver(bin_dir, "kafka")
    backends = subprocess.run(
        [str(bin_dir / "amb"), "backends"], capture_output=True, text=True, check=True
    )
    assert any(line.startswith("kafka") for line in backends.stdout.splitlines()), backends.stdout
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", ROUND_TRIP, kafka_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "KafkaTransport {'ok': True}" in done.stdout
