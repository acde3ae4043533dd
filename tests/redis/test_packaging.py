"""amb-core[redis] installs from wheels with redis-py and no other driver, and finds the backend."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import assert_only_driver

pytestmark = [pytest.mark.packaging, pytest.mark.redis]

ROUND_TRIP = """
import asyncio, sys
from amb_core import MessageBus

async def main():
    async with MessageBus.from_url(sys.argv[1]) as bus:
        got = []
        await bus.subscribe("pkg.check", got.append)
        await bus.publish("pkg.check", {"ok": True})
        for _ in range(500):
            if got:
                break
            await asyncio.sleep(0.01)
        print(type(bus.transport).__name__, got[0].payload)

asyncio.run(main())
"""


def test_redis_extra_installs_and_is_discovered(
    fresh_venv: Callable[[str], Path], redis_url: str, namespace: str
) -> None:
    bin_dir = fresh_venv("redis")
    assert_only_driver(bin_dir, "redis")
    backends = subprocess.run(
        [str(bin_dir / "amb"), "backends"], capture_output=True, text=True, check=True
    )
    assert any(line.startswith("redis") for line in backends.stdout.splitlines()), backends.stdout
    url = f"{redis_url}{'&' if '?' in redis_url else '?'}namespace={namespace}"
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", ROUND_TRIP, url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "RedisTransport {'ok': True}"
