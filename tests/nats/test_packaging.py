"""amb-core[nats] installs from wheels with nats-py and no other driver, and finds the backend."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import assert_only_driver

pytestmark = [pytest.mark.packaging, pytest.mark.nats]

ROUND_TRIP = """
import asyncio, sys
from amb_core import MessageBus
from amb_nats import NATSBroker

async def main():
    async with MessageBus.from_url(sys.argv[1]) as bus:
        got = []
        await bus.subscribe("pkgcheck.nats", got.append)
        await bus.publish("pkgcheck.nats", {"ok": True})
        for _ in range(500):
            if got:
                break
            await asyncio.sleep(0.01)
        assert type(bus.transport) is NATSBroker
        print(type(bus.transport).__name__, got[0].payload)

asyncio.run(main())
"""


def test_nats_extra_installs_and_is_discovered(
    fresh_venv: Callable[[str], Path], nats_url: str
) -> None:
    bin_dir = fresh_venv("nats")
    assert_only_driver(bin_dir, "nats")
    backends = subprocess.run(
        [str(bin_dir / "amb"), "backends"], capture_output=True, text=True, check=True
    )
    assert any(line.startswith("nats") for line in backends.stdout.splitlines()), backends.stdout
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", ROUND_TRIP, nats_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "NATSTransport {'ok': True}"
