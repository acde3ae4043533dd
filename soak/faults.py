"""The kill plan: when the consumer process and the broker are SIGKILLed, and what each kill did.

Both consumer kills come before a quarter of the run, so that the quarter, half and end memory
samples all read the last consumer process: the flatness check then compares one process with
itself after it handled about half of the messages more. The broker restarts come at 30 % and 60 %,
while that last consumer runs, so its subscription has to live through both. Progress is the share
of messages published (or of the time, for a timed run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import anyio
import attrs

from amb_core import MessageBus

from .brokers import Broker
from .ledger import Ledger
from .publisher import PublishStats
from .supervisor import Supervisor

__all__ = ["Fault", "FaultRecord", "plan", "run_faults"]

Kind = Literal["consumer", "broker"]


@attrs.frozen(order=True)
class Fault:
    at: float  # run progress, 0 to 1
    kind: Kind


@attrs.define
class FaultRecord:
    """What one fault did.

    :param at: the run's progress when it struck.
    :param elapsed: seconds since the run started.
    :param down: seconds the broker (or consumer) was gone, until its successor answered.
    :param state_down: the publishing bus's connection state just before the broker came back.
    :param resumed: seconds from the broker answering again to the next publish that returned.
    :param state_after: the publishing bus's state once a publish returned again.
    :param done: the fault is over (the successor runs, or the broker answers again).
    """

    fault: Fault
    at: float
    elapsed: float
    down: float = 0.0
    state_down: str = ""
    resumed: float | None = None
    state_after: str = ""
    done: bool = False


def plan(kinds: frozenset[str]) -> list[Fault]:
    """The faults of the given kinds ("consumer", "broker")."""
    faults = [Fault(0.08, "consumer"), Fault(0.16, "consumer")]
    faults += [Fault(0.30, "broker"), Fault(0.60, "broker")]
    return sorted(f for f in faults if f.kind in kinds)


async def run_faults(
    faults: list[Fault],
    progress: Callable[[], float],
    broker: Broker,
    supervisor: Supervisor,
    publisher: MessageBus,
    stats: PublishStats,
    ledger: Ledger,
    records: list[FaultRecord],
    publishing: Callable[[], bool],
    *,
    outage: float,
    started: float,
) -> None:
    """Strike each fault once the run's progress reaches it; append what happened to ``records``.

    ``publishing()`` says whether publishers still run (a restart after the last publish has no
    publish to resume)."""
    for fault in faults:
        at = fault.at  # awaited right here, so the closure cannot see a later fault
        await ledger.until(lambda: progress() >= at or not publishing())  # noqa: B023
        record = FaultRecord(fault, progress(), time.monotonic() - started)
        records.append(record)
        began = time.monotonic()
        if fault.kind == "consumer":
            await supervisor.restart()
            record.down = time.monotonic() - began
            record.done = True
            continue
        await anyio.to_thread.run_sync(broker.kill)
        await anyio.sleep(outage)  # the outage itself: publishers and consumer meet it
        record.state_down = str(publisher.state.value)
        await anyio.to_thread.run_sync(broker.start)
        back = time.monotonic()
        record.down = back - began
        record.done = True
        with anyio.move_on_after(300):
            await ledger.until(lambda: stats.last_success >= back or not publishing())  # noqa: B023
            if stats.last_success >= back:
                record.resumed = stats.last_success - back
            record.state_after = str(publisher.state.value)
