"""Does a consumer group scale? ``python -m bench scale`` (or ``nox -s bench -- scale``).

For each durable mode (Redis Streams on one server and on a Redis Cluster, NATS JetStream on one
server and on a three-node cluster with streams replicated three times, Kafka with 4 partitions,
SQS on moto), a
group of 1, 2 and 4 consumer processes (:mod:`bench._scale_worker`: concurrency 1, prefetch 10, a
handler that awaits 5 ms of simulated I/O) takes ``AMB_BENCH_SCALE_N`` messages published at once. Printed per
group size: the throughput (messages over the time from the group's first handled message to its
last), the speed-up over one member, the publisher's rate (it must stay above the group's, or the
row measures the publisher), and each member's share against an equal share. Targets: 4
members reach at least 3.5x one member, and every share is within 25 % of equal. Brokers as the other
benchmarks find them (``AMB_<BACKEND>_URL``, else a local or throwaway server); the clusters are
started here (``AMB_REDIS_CLUSTER_URL`` names a running Redis Cluster). ``AMB_BENCH_SCALE_MODES`` (comma-separated names as printed) runs only those modes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from amb_core import MessageBus

N = int(os.environ.get("AMB_BENCH_SCALE_N", "1200"))
SIZES = (1, 2, 4)


def _modes() -> list[tuple[str, Callable[[], tuple[str, Any]]]]:
    def redis() -> tuple[str, Any]:
        from bench.bench_redis import server_url

        url, server = server_url()
        return f"{url}?namespace=scale{uuid.uuid4().hex[:8]}", server

    def redis_cluster() -> tuple[str, Any]:
        """``AMB_REDIS_CLUSTER_URL``, else three masters with a replica each (tests/redis_cluster).
        One topic is one stream on one master: the row shows the group on a cluster, whose
        scale-out across masters comes from more topics."""
        namespace = f"namespace=scale{uuid.uuid4().hex[:8]}"
        url = os.environ.get("AMB_REDIS_CLUSTER_URL")
        if url:
            return f"{url}{'&' if '?' in url else '?'}{namespace}", None
        from tests.redis_cluster.cluster import start_redis_cluster

        try:
            cluster = start_redis_cluster()
        except BaseException as exc:  # pytest's skip outside pytest
            raise RuntimeError(f"no Redis Cluster: {exc}") from None
        return f"{cluster.url()}?{namespace}", cluster

    def nats() -> tuple[str, Any]:
        url = os.environ.get("AMB_NATS_URL", "nats://127.0.0.1:4222")
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}mode=jetstream&stream_prefix=SCALE{uuid.uuid4().hex[:6]}", None

    def nats_cluster() -> tuple[str, Any]:
        from tests.nats.cluster import start_nats_cluster

        cluster = start_nats_cluster(3)
        prefix = f"SCALE{uuid.uuid4().hex[:6]}"
        return f"{cluster.url()}?mode=jetstream&replicas=3&stream_prefix={prefix}", cluster

    def kafka() -> tuple[str, Any]:
        from tests.kafka.tansu import broker_url

        url, server = broker_url()
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}partitions=4&fetch_wait_max_ms=10&session_timeout_ms=6000", server

    def sqs() -> tuple[str, Any]:
        from bench.bench_sqs import endpoint, namespaced

        url, server = endpoint()
        return namespaced(url), server

    return [
        ("Redis Streams", redis),
        ("Redis Cluster", redis_cluster),
        ("JetStream", nats),
        ("JetStream R3", nats_cluster),  # a three-node cluster, streams replicated on all three
        ("Kafka", kafka),
        ("SQS (moto)", sqs),
    ]


def _start(url: str, topic: str, group: str, progress: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench._scale_worker", url, topic, group, str(progress)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        raise RuntimeError(f"a worker did not start (said {line!r})")
    return process


def _stop(process: subprocess.Popen[str]) -> dict[str, Any]:
    process.terminate()
    out, _ = process.communicate(timeout=60)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


PUBLISHERS = 8
"""Batches in flight at once. One batch awaited at a time was the limit on Kafka: each waits for its
delivery reports (Tansu writes before it acknowledges), so the publisher made about 500 msg/s, and a
group of four, able to take 800, measured the publisher (2.6x). One on SQS: moto serves the
publisher and the group from one Python process, and eight publishers left the group a third of it
(shares 1.32 to 0.77)."""


async def _publish(url: str, topic: str, count: int, publishers: int) -> float:
    """Batches of 10, each with a key of its own, ``publishers`` in flight: on Kafka the keys
    spread the batches over the partitions (keyless records would stick to one partition per
    batch). Returns the publish rate, printed beside the group's so that it shows the publisher
    was not what the group waited for."""
    starts = iter(range(0, count, 10))

    async def publisher(bus: MessageBus) -> None:
        for start in starts:
            batch = list(range(start, min(start + 10, count)))
            await bus.publish_many(topic, batch, key=f"k{start // 10}")

    async with MessageBus.from_url(url) as bus:
        began = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(publishers):
                tg.start_soon(publisher, bus)
        return count / (time.monotonic() - began)


def _run(url: str, size: int, count: int) -> tuple[float, list[int], float]:
    """Messages per second of a group of ``size`` members, each member's count, and the publish
    rate."""
    topic, group = f"scale{uuid.uuid4().hex[:8]}.jobs", f"g{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as folder:
        files = [Path(folder) / f"member{i}" for i in range(size)]
        members = [_start(url, topic, group, path) for path in files]
        time.sleep(2.0 if "kafka" in url else 0.2)  # margin: a Kafka member is ready once assigned
        try:
            publishers = 1 if url.startswith("sqs") else PUBLISHERS
            published = anyio.run(_publish, url, topic, count, publishers)
            _wait_for(files, count, members)
            results = [_stop(m) for m in members]
        finally:
            for member in members:
                if member.poll() is None:
                    member.kill()
    handled = [r["handled"] for r in results]
    firsts = [r["first"] for r in results if r["handled"]]
    lasts = [r["last"] for r in results if r["handled"]]
    seconds = max(lasts) - min(firsts) if firsts else float("inf")
    return sum(handled) / seconds if seconds > 0 else 0.0, handled, published


def _wait_for(files: list[Path], count: int, members: list[subprocess.Popen[str]]) -> None:
    """Until the members together handled ``count``, or nothing moved for 10 s."""
    total, moved = -1, time.monotonic()
    while True:
        now = sum(int(f.read_text() or 0) for f in files if f.exists())
        if now >= count or any(m.poll() is not None for m in members):
            return
        if now != total:
            total, moved = now, time.monotonic()
        elif time.monotonic() - moved > 10:
            return
        time.sleep(0.1)


def main() -> None:
    print(f"{N} messages per run; handler: 5 ms of simulated I/O, concurrency 1 per member")
    print(
        f"{'mode':<16}{'members':>8}{'msg/s':>10}{'speed-up':>10}{'published':>11}"
        "  shares (equal = 1.00)"
    )
    only = {m.strip() for m in os.environ.get("AMB_BENCH_SCALE_MODES", "").split(",") if m.strip()}
    for name, make in _modes():
        if only and name not in only:
            continue
        try:
            url, server = make()
        except (Exception, SystemExit) as exc:
            print(f"{name:<16} skipped: {exc}")
            continue
        count = N if "sqs" not in url else min(N, 300)
        try:
            base = 0.0
            for size in SIZES:
                rate, handled, published = _run(url, size, count)
                base = base or rate
                shares = " ".join(f"{h * size / max(sum(handled), 1):.2f}" for h in handled)
                lost = "" if sum(handled) >= count else f"  (handled {sum(handled)} of {count})"
                print(
                    f"{name:<16}{size:>8}{rate:>10.0f}{rate / base:>9.2f}x{published:>11.0f}"
                    f"  {shares}{lost}"
                )
        finally:
            if server is not None:
                server.close()
