"""The publishers: several tasks, each awaiting one publish at a time, retrying through outages.

A publish that returned counts as published: the broker acknowledged it. One that raised is retried
(after a short backoff) with the same number until it succeeds; the broker may have stored the
failed attempt too, which then shows as a duplicate, never as a loss. The errors are counted by type:
a typed AMB error is the contract, anything else is a defect, and so is a publish that neither
returns nor raises within ``hang_limit`` seconds (it is cancelled, counted and retried).
"""

from __future__ import annotations

import time
from collections import Counter

import anyio
import attrs

from amb_core import MessageBus
from amb_core.errors import AMBError

from .ledger import Ledger

__all__ = ["Numbers", "PublishStats", "is_poison", "publish_forever"]

PAD = "x" * 64  # a message of about 100 bytes, like the benchmarks'


def is_poison(number: int) -> bool:
    """1 % of the messages: the handler raises for them."""
    return number % 100 == 99


@attrs.define
class Numbers:
    """Hands out message numbers until ``count`` are out, or until ``deadline`` (monotonic)."""

    count: int | None
    deadline: float | None = None
    next: int = 0
    started: float = attrs.field(factory=time.monotonic)

    def take(self) -> int | None:
        if self.count is not None and self.next >= self.count:
            return None
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return None
        self.next += 1
        return self.next - 1

    def progress(self, published: int) -> float:
        """How far the run is, 0 to 1: by count, or by time for a timed run."""
        if self.count is not None:
            return published / self.count
        assert self.deadline is not None
        return min(1.0, (time.monotonic() - self.started) / (self.deadline - self.started))


@attrs.define
class PublishStats:
    """What the publishers met on the way."""

    retried: Counter[str] = attrs.field(factory=Counter)  # typed errors, by class name
    untyped: Counter[str] = attrs.field(factory=Counter)  # anything else: a defect
    hangs: int = 0
    examples: dict[str, str] = attrs.field(factory=dict)  # first message of each error type
    last_success: float = attrs.field(factory=time.monotonic)

    def failed(self, exc: BaseException) -> None:
        name = type(exc).__name__
        (self.retried if isinstance(exc, AMBError) else self.untyped)[name] += 1
        self.examples.setdefault(name, str(exc)[:300])


async def publish_forever(
    bus: MessageBus,
    topic: str,
    numbers: Numbers,
    ledger: Ledger,
    stats: PublishStats,
    *,
    hang_limit: float,
) -> None:
    """One publisher task: publish numbers until there are none left."""
    while (number := numbers.take()) is not None:
        poison = is_poison(number)
        payload = {"i": number, "poison": poison, "pad": PAD}
        pause = 0.05
        while True:
            with anyio.move_on_after(hang_limit) as scope:
                try:
                    await bus.publish(topic, payload)
                    break
                except Exception as exc:
                    stats.failed(exc)
            if scope.cancelled_caught:
                stats.hangs += 1
            await anyio.sleep(pause)  # backoff before the retry, not a wait for a condition
            pause = min(1.0, pause * 2)
        stats.last_success = time.monotonic()
        ledger.add_published(number, poison)
