"""Members leave a group mid-backlog: cleanly (its subscription or its whole bus closes) or by a
crash (a member process killed with SIGKILL). Their partitions move to the member left, and every
published message is handled at least once.

A clean leave commits what it handled before it leaves (the close waits for the handler in flight,
then commits synchronously), so nothing is handled twice. A crash commits nothing more: what the
killed member handled after its last commit (commits go out every ``commit_interval``, 0.1 s) is
handled again by the next owner. The crash case counts those duplicates and checks that each one is
such a record: handled by the killed member shortly before the kill.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import anyio
import pytest

from amb_core import Message, MessageBus
from amb_core.testing.conformance import wait_until
from amb_kafka import KafkaTransport

pytestmark = pytest.mark.anyio

KEYS = 16
"""Keys the backlog is published with: spread over every partition of the default topic."""

UNCOMMITTED_WINDOW = 1.0
"""Seconds before the kill within which a record handled by the killed member may come again: the
commit interval (0.1 s) and a commit's round trip, with room for a loaded machine. Measured: at
most 0.10 s (before the poll thread's wait was bounded by the next commit: up to 0.47 s)."""


async def _publish_backlog(bus: MessageBus, topic: str, count: int) -> None:
    for key in range(KEYS):
        await bus.publish_many(topic, list(range(key, count, KEYS)), key=f"k{key}")


@pytest.mark.parametrize("how", ["unsubscribe", "bus-close"])
async def test_a_member_leaving_mid_backlog_loses_and_repeats_nothing(
    kafka_url: str, how: str
) -> None:
    topic, group = f"leave{uuid.uuid4().hex[:8]}", f"leave-{uuid.uuid4().hex[:8]}"
    count = 12_000  # ~6 s of work for the two: outlasts the join and the leave
    handled: Counter[int] = Counter()
    by: Counter[str] = Counter()

    def handler_of(name: str):  # type: ignore[no-untyped-def]
        def handle(message: Message) -> None:
            time.sleep(0.0002)  # a busy handler: the backlog outlasts the leave
            handled[message.payload] += 1
            by[name] += 1

        return handle

    async with MessageBus(KafkaTransport(kafka_url)) as stays:
        leaver = MessageBus(KafkaTransport(kafka_url))
        await leaver.__aenter__()
        try:
            await _publish_backlog(stays, topic, count)
            sub = await leaver.subscribe(topic, handler_of("leaver"), group=group, start="earliest")
            await wait_until(lambda: by["leaver"] >= 200, 30, "the leaving member to be busy")
            await stays.subscribe(topic, handler_of("stays"), group=group, start="earliest")
            await wait_until(lambda: by["stays"] >= 200, 60, "both members to be busy")
            left_at = len(handled)
            if how == "unsubscribe":
                await leaver.unsubscribe(sub)
            else:
                await leaver.__aexit__(None, None, None)
            assert left_at < count, "the backlog was over before the leave: not the case meant"
            await wait_until(
                lambda: len(handled) >= count,
                90,
                lambda: f"every message; {len(handled)} of {count} ({dict(by)})",
            )
            await anyio.sleep(1.0)  # nothing more (no duplicate) arrives
        finally:
            await leaver.__aexit__(None, None, None)
    assert set(handled) == set(range(count)), "nothing lost"
    assert [p for p, n in handled.items() if n > 1] == [], "nothing handled twice"
    assert by["leaver"] > 0 and by["stays"] > 0


MEMBER = textwrap.dedent(
    """
    import sys, time, anyio
    from amb_core import MessageBus
    from amb_kafka import KafkaTransport

    url, topic, group, log = sys.argv[1:5]

    async def main():
        out = open(log, "a", buffering=1)
        async with MessageBus(KafkaTransport(url)) as bus:
            def handle(message):
                time.sleep(0.0005)
                out.write(f"{message.payload} {time.time()}\\n")
            await bus.subscribe(topic, handle, group=group, start="earliest")
            print("ready", flush=True)
            await anyio.sleep_forever()

    anyio.run(main)
    """
)
"""A group member in a process of its own: it writes each handled payload and the time it was
handled to a line-buffered log (the lines are in the file as soon as written, so a SIGKILL loses
none)."""


def _read_log(log: Path) -> list[tuple[int, float]]:
    if not log.exists():
        return []
    lines = log.read_text().splitlines()
    # the last line may be cut short by the kill: only whole lines count
    return [(int(a), float(b)) for a, _, b in (line.partition(" ") for line in lines) if b]


async def test_a_member_crashing_mid_backlog_loses_nothing(kafka_url: str, tmp_path: Path) -> None:
    topic, group = f"crash{uuid.uuid4().hex[:8]}", f"crash-{uuid.uuid4().hex[:8]}"
    count = 20_000
    log = tmp_path / "member.log"
    handled: Counter[int] = Counter()

    def handle(message: Message) -> None:
        time.sleep(0.0002)
        handled[message.payload] += 1

    child = subprocess.Popen(  # noqa: ASYNC220 - a plain child process, started once
        [sys.executable, "-c", MEMBER, kafka_url, topic, group, str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        async with MessageBus(KafkaTransport(kafka_url)) as bus:
            await _publish_backlog(bus, topic, count)
            assert child.stdout is not None
            with anyio.fail_after(60):
                assert await anyio.to_thread.run_sync(child.stdout.readline) == "ready\n"
            await wait_until(lambda: len(_read_log(log)) >= 500, 60, "the member to be busy")
            await bus.subscribe(topic, handle, group=group, start="earliest")
            await wait_until(lambda: len(handled) >= 200, 60, "both members to be busy")
            child.send_signal(signal.SIGKILL)
            killed_at = time.time()
            child.wait(10)
            by_child = _read_log(log)
            assert len(by_child) + len(handled) < count, "the backlog was over before the kill"
            in_child = {payload for payload, _ in by_child}
            await wait_until(
                lambda: set(handled) | in_child >= set(range(count)),
                120,
                lambda: f"every message; {len(set(handled) | in_child)} of {count}",
            )
            await anyio.sleep(1.0)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert set(handled) | in_child == set(range(count)), "nothing lost"
    assert [p for p, n in handled.items() if n > 1] == [], "the member left handles each once"
    assert len(in_child) == len(by_child), "the killed member handled each once"
    twice = in_child & set(handled)
    late = {payload for payload, at in by_child if at >= killed_at - UNCOMMITTED_WINDOW}
    oldest = max((killed_at - at for payload, at in by_child if payload in twice), default=0.0)
    print(
        f"crash: {len(by_child)} handled by the killed member, {len(handled)} by the other, "
        f"{len(twice)} by both, the oldest of them handled {oldest:.2f}s before the kill"
    )
    assert twice <= late, (
        f"{len(twice - late)} handled twice were handled by the killed member more than "
        f"{UNCOMMITTED_WINDOW}s before the kill: committed offsets came again"
    )
