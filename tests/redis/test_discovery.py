"""Wildcard discovery in Streams mode finds streams that no AMB program registered, at a bounded
cost: one SCAN step per tick, a full pass in about ``DBSIZE / scan`` ticks (amb_redis._discovery)."""

from __future__ import annotations

import math
import time
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from amb_core import MessageBus
from amb_core.message import Message
from amb_core.testing.conformance import wait_until
from amb_core.testing.servers import ServerProcess
from amb_redis import RedisTransport

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


async def _scan_calls(raw: Any) -> int:
    stats = await raw.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


async def test_a_foreign_stream_is_found_among_many_keys_within_the_bound(
    redis_server: ServerProcess,
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}"
    raw = aioredis.Redis.from_url(url)
    try:
        await raw.mset({f"other:{i}": i for i in range(6000)})  # keys the SCAN must walk past
        await raw.xadd("amb:scan.old", {"body": b'"before"'})  # a foreign stream, older
        keys = await raw.dbsize()
        scan, discover = 400, 0.05
        transport = RedisTransport(url, scan=scan, discover=discover)
        async with MessageBus(transport) as bus:
            got: list[Message] = []
            await bus.subscribe("scan.*", got.append, group="scanners")
            calls_before = await _scan_calls(raw)
            started = time.monotonic()
            await raw.xadd("amb:scan.old", {"body": b'"after"'})
            await raw.xadd("amb:scan.fresh", {"body": b'"fresh"'})  # created by another program
            # Redis visits about `scan` hash-table buckets per step; the table has at most twice
            # as many buckets as keys here (no mass deletion), so a pass is at most this many ticks:
            ticks = math.ceil(2 * keys / scan)
            bound = ticks * discover + 1.0  # + one tick's read and scheduling slack
            await wait_until(
                lambda: {m.payload for m in got} == {"after", "fresh"},
                bound + 5,
                lambda: f"both new entries (got {[m.payload for m in got]})",
            )
            elapsed = time.monotonic() - started
            calls = await _scan_calls(raw) - calls_before
        assert elapsed < bound, f"found after {elapsed:.2f}s; the bound is {bound:.2f}s"
        assert sorted(m.payload for m in got) == ["after", "fresh"], "nothing from before"
        assert calls <= elapsed / discover + 3, f"{calls} SCANs in {elapsed:.2f}s: one per tick"
    finally:
        await raw.aclose()


async def test_scan_zero_reads_only_the_registry(redis_url: str, namespace: str) -> None:
    """``scan=0`` turns the SCAN off: a foreign stream is then found only once registered."""
    transport = RedisTransport(redis_url, namespace=namespace, scan=0, discover=0.05)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        async with MessageBus(transport) as bus:
            got: list[Message] = []
            await bus.subscribe("reg.*", got.append)
            await raw.xadd(f"{namespace}:reg.a", {"body": b"1"})
            await anyio.sleep(0.5)  # ten ticks: proves that it is NOT found
            assert got == []
            await raw.sadd(f"{namespace}::topics", "reg.a")  # what an AMB publisher does
            await raw.xadd(f"{namespace}:reg.a", {"body": b"2"})
            await wait_until(lambda: len(got) == 2, 5, "the registered stream, from the start")
            assert [m.payload for m in got] == [1, 2]
    finally:
        await raw.aclose()
