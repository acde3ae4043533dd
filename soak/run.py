"""One mode, start to verdict: brokers up, consumer and dead-letter collector subscribed, publishers
and faults running together, then the drain until every published message is accounted for.

The parent process holds two buses on the broker: one publishes, the other collects the dead letters
with a group subscription to ``dlq.<topic>`` (the core's default dead-letter handler, running in the
consumer process, publishes them there). Both must live through the broker restarts too.

Every phase is bounded, so a soak always ends by itself with a verdict: publishing by
``time_limit`` (and by ``stall``: no publish returned for that long), the drain by ``settle`` seconds
without anything new handled or dead-lettered, and by ``time_limit`` again.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Literal

import anyio
import attrs

from amb_core import Message, MessageBus
from amb_core.deadletter import H_DLQ_REASON

from .audit import stored
from .brokers import Broker
from .capture import captured
from .faults import plan, run_faults
from .ledger import HandledFiles
from .modes import Mode
from .publisher import Numbers, publish_forever
from .report import Result, print_result
from .supervisor import Supervisor

__all__ = ["Settings", "run_mode"]

TOPIC = "soak.jobs"
GROUP = "soak-workers"
DLQ_GROUP = "soak-dead-letters"


@attrs.frozen
class Settings:
    """The command line's knobs (see ``python -m soak --help``)."""

    count: int = 100_000
    seconds: float = 300.0  # publishing time of a timed mode (SQS on moto): with the drain, ~8 min
    minimum: int = 2_000  # a timed mode publishes at least this many
    publishers: int | None = None  # concurrent publisher tasks (default: the mode's)
    outage: float = 2.0
    settle: float = 120.0
    time_limit: float = 600.0
    hang_limit: float = 60.0
    stall: float = 180.0
    concurrency: int = 8
    ack_wait: float = 10.0
    attempts: int = 3
    progress_every: float = 10.0
    faults: frozenset[str] = frozenset({"consumer", "broker"})  # which kinds to strike
    hold: float = 0.0  # seconds a failed mode keeps its brokers up for inspection
    consumer_options: str = ""  # query options added to the consumer's URL only (e.g. debug=cgrp)


async def run_mode(mode: Mode, settings: Settings) -> Result:
    """Run one mode; never raises for what the brokers or the backend do (that is the result)."""
    target = (
        f"{settings.seconds / 60:g} min of publishing (at least {settings.minimum:,})"
        if mode.timed
        else f"{settings.count:,} messages"
    )
    result = Result(mode, target)
    folder = Path(tempfile.mkdtemp(prefix=f"amb-soak-{mode.name}-"))
    result.folder = str(folder)
    started = time.monotonic()
    with captured(folder):
        try:
            broker = await anyio.to_thread.run_sync(mode.start)
        except Exception as exc:
            result.error = f"the broker did not start: {exc!r}"[:2000]
            return result
        try:
            await _run(mode, settings, broker, folder, result)
        except Exception as exc:
            result.error = f"the run failed: {exc!r}"[:2000]
        finally:
            if settings.hold and result.failures():
                print_result(result)
                print(
                    f"  holding the brokers for {settings.hold:g} s: {broker.url} "
                    f"(S3/moto: {[p.port for p in broker.helpers]})",
                    flush=True,
                )
                await anyio.sleep(settings.hold)  # a pause for a person to look, on request
            with anyio.CancelScope(shield=True):
                for log in broker.logs():
                    shutil.copy(log, folder)
                await anyio.to_thread.run_sync(broker.close)
            result.total_seconds = time.monotonic() - started
    return result


async def _run(
    mode: Mode, settings: Settings, broker: Broker, folder: Path, result: Result
) -> None:
    url = mode.url(broker, uuid.uuid4().hex[:8])
    ledger = result.ledger
    files = HandledFiles(folder, ledger.handled)
    async with (
        MessageBus.from_url(url, name="soak-publisher") as publisher,
        MessageBus.from_url(url, name="soak-dead-letters") as collector,
    ):
        start: Literal["new", "earliest"] = (
            "earliest" if publisher.transport.capabilities.replay else "new"
        )

        def collect(message: Message) -> None:
            body = message.payload
            if isinstance(body, dict) and isinstance(body.get("i"), int):
                ledger.dead.add(body["i"])
                ledger.dead_reasons[message.headers.get(H_DLQ_REASON, "?")] += 1
            else:
                ledger.dead_reasons["not a soak message"] += 1

        await collector.subscribe(
            "dlq." + TOPIC, collect, group=DLQ_GROUP, start=start, ack_wait=settings.ack_wait
        )
        options = ["--concurrency", str(settings.concurrency), "--start", start]
        options += ["--ack-wait", str(settings.ack_wait), "--attempts", str(settings.attempts)]
        consumer_url = url + ("&" if "?" in url else "?") + settings.consumer_options
        supervisor = Supervisor(files, [consumer_url.rstrip("?&"), TOPIC, GROUP], options)
        await supervisor.start()
        try:
            await _soak(mode, settings, broker, publisher, supervisor, files, result)
        finally:
            with anyio.CancelScope(shield=True):
                files.read()
                result.consumer_exit = await supervisor.stop()
            result.unexpected_exits = supervisor.unexpected_exits


async def _soak(
    mode: Mode,
    settings: Settings,
    broker: Broker,
    publisher: MessageBus,
    supervisor: Supervisor,
    files: HandledFiles,
    result: Result,
) -> None:
    ledger, stats = result.ledger, result.stats
    began = time.monotonic()
    numbers = Numbers(None, began + settings.seconds) if mode.timed else Numbers(settings.count)
    publishing = True
    faults = plan(settings.faults if broker.restartable else settings.faults - {"broker"})
    faults_done = anyio.Event()

    def progress() -> float:
        return numbers.progress(len(ledger.published))

    def sample() -> None:
        result.memory.add(ledger.handled.unique, supervisor.rss_kib(), supervisor.generation)

    async def watch(publishers: anyio.CancelScope) -> None:
        """Reads the consumers' files, revives a consumer that died by itself, samples its memory,
        prints progress, and stops publishers that stalled or ran out of time."""
        last_print = began

        async def tick() -> None:
            nonlocal last_print
            await anyio.sleep(0.25)
            files.read()
            await supervisor.revive()
            sample()
            now = time.monotonic()
            if now - last_print >= settings.progress_every:
                last_print = now
                _print_progress(now - began, result, supervisor, publisher)
            if publishing and now - stats.last_success > settings.stall:
                result.stalled = True
                publishers.cancel()
            if publishing and now - began > settings.time_limit:
                result.timed_out = True
                publishers.cancel()

        while True:
            await tick()

    async def strike() -> None:
        try:
            await run_faults(
                faults,
                progress,
                broker,
                supervisor,
                publisher,
                stats,
                ledger,
                result.faults,
                lambda: publishing,
                outage=settings.outage,
                started=began,
            )
        finally:
            faults_done.set()

    async def publish() -> None:
        await publish_forever(
            publisher, TOPIC, numbers, ledger, stats, hang_limit=settings.hang_limit
        )

    tasks_count = settings.publishers or mode.publishers
    async with anyio.create_task_group() as tasks:
        async with anyio.create_task_group() as publishers:
            tasks.start_soon(watch, publishers.cancel_scope)
            tasks.start_soon(strike)
            for _ in range(tasks_count):
                publishers.start_soon(publish)
        if mode.timed and len(ledger.published) < settings.minimum and not result.stalled:
            numbers.deadline, numbers.count = None, settings.minimum
            async with anyio.create_task_group() as more:
                tasks.start_soon(_stop_at, more.cancel_scope, began + settings.time_limit)
                for _ in range(tasks_count):
                    more.start_soon(publish)
        publishing = False
        ledger.changed()  # the fault plan waits on "progress, or publishing over"
        result.publish_seconds = time.monotonic() - began
        with anyio.move_on_after(settings.time_limit):
            await faults_done.wait()
        result.settled = await _drain(settings, files, result, supervisor)
        result.drain_seconds = time.monotonic() - began - result.publish_seconds
        sample()
        tasks.cancel_scope.cancel()
    if lost := ledger.missing():
        result.lost_stored = await stored(publisher, TOPIC, lost)


async def _stop_at(scope: anyio.CancelScope, deadline: float) -> None:
    await anyio.sleep(max(0.0, deadline - time.monotonic()))
    scope.cancel()


async def _drain(
    settings: Settings, files: HandledFiles, result: Result, supervisor: Supervisor
) -> bool:
    """Wait until every published message is handled or dead-lettered; False when nothing new
    arrived for ``settings.settle`` seconds, or after ``settings.time_limit``."""
    ledger = result.ledger
    seen, quiet_since = -1, time.monotonic()
    deadline = quiet_since + settings.time_limit
    while True:
        files.read()
        await supervisor.revive()
        if not ledger.missing():
            return True
        now = time.monotonic()
        count = ledger.handled.unique + ledger.dead.unique
        if count != seen:
            seen, quiet_since = count, now
        if now - quiet_since > settings.settle or now > deadline:
            return False
        await anyio.sleep(0.25)


def _print_progress(
    elapsed: float, result: Result, supervisor: Supervisor, publisher: MessageBus
) -> None:
    ledger, stats = result.ledger, result.stats
    rss = supervisor.rss_kib()
    errors = sum(stats.retried.values()) + sum(stats.untyped.values())
    print(
        f"  {elapsed:6.0f} s  published {len(ledger.published):>7,}  "
        f"handled {ledger.handled.unique:>7,}  dead {ledger.dead.unique:>5,}  "
        f"consumer #{supervisor.generation} "
        f"{'-' if rss is None else f'{rss / 1024:.0f} MiB'}  "
        f"bus {publisher.state.value}  publish errors {errors}",
        flush=True,
    )
