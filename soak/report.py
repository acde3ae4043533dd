"""One mode's figures, its verdict, and how they are printed.

A mode fails when anything published was neither handled nor dead-lettered (every mode here keeps
what it acknowledged: Redis with AOF, JetStream on files, Tansu on S3, SQS never restarted), when
the dead letters are not exactly the poison messages, when the consumer's resident memory at the end
is not within 10 % of the half-way sample, or when the run itself went wrong: publishing stalled, a
publish hung or raised an untyped error, a consumer exited on its own or hung at close.
"""

from __future__ import annotations

import attrs

from .faults import FaultRecord
from .ledger import Ledger
from .memory import FLATNESS, MemoryTrace
from .modes import Mode
from .publisher import PublishStats

__all__ = ["Result", "print_result"]


@attrs.define
class Result:
    """Everything one mode's run measured."""

    mode: Mode
    target: str  # "100,000 messages" or "8 min of publishing"
    ledger: Ledger = attrs.field(factory=Ledger)
    stats: PublishStats = attrs.field(factory=PublishStats)
    faults: list[FaultRecord] = attrs.field(factory=list)
    memory: MemoryTrace = attrs.field(factory=MemoryTrace)
    publish_seconds: float = 0.0
    drain_seconds: float = 0.0  # from the last publish until everything was accounted for
    total_seconds: float = 0.0
    settled: bool = False
    stalled: bool = False
    timed_out: bool = False
    lost_stored: tuple[int, int] | None = None  # of the lost, how many a replay finds; its reads
    consumer_exit: int | None = 0
    unexpected_exits: list[int] = attrs.field(factory=list)
    folder: str = ""
    error: str = ""  # the run could not be carried out (a broker did not start, ...)

    def failures(self) -> list[str]:
        if self.error:
            return [self.error]
        ledger, found = self.ledger, []
        if lost := len(ledger.missing()):
            found.append(f"{lost} lost")
        if ledger.dead.unique != len(ledger.poison):
            found.append(f"{ledger.dead.unique} dead-lettered != {len(ledger.poison)} poison")
        if ledger.healthy_dead():
            found.append(f"{ledger.healthy_dead()} healthy messages dead-lettered")
        if ledger.poison_handled():
            found.append(f"{ledger.poison_handled()} poison messages handled")
        growth = self.memory.growth()
        if growth is None:
            found.append("consumer memory not sampled")
        elif abs(growth) > FLATNESS:
            found.append(f"consumer memory not flat: end {growth:+.1%} against the half")
        if self.stalled:
            found.append("publishing stalled")
        if self.timed_out:
            found.append(
                f"publishing did not finish within the time limit "
                f"({len(ledger.published):,} published in {self.publish_seconds:.0f} s)"
            )
        if self.stats.hangs:
            found.append(f"{self.stats.hangs} publishes hung")
        if self.stats.untyped:
            found.append(f"untyped publish errors {dict(self.stats.untyped)}")
        if self.unexpected_exits:
            found.append(f"consumer exited on its own: codes {self.unexpected_exits}")
        if self.consumer_exit != 0:
            found.append(f"consumer close: exit {self.consumer_exit} (None: hung, SIGKILLed)")
        return found


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _memory(result: Result) -> str:
    parts = []
    for name, fraction in (("quarter", 0.25), ("half", 0.5), ("end", 1.0)):
        sample = result.memory.at(fraction)
        parts.append(
            f"{name} n/a"
            if sample is None
            else f"{name} {sample.rss_kib / 1024:.1f} MiB (#{sample.generation}, "
            f"{sample.handled:,} handled)"
        )
    growth = result.memory.growth()
    return ", ".join(parts) + ("" if growth is None else f"; end vs half {growth:+.1%}")


def _fault(record: FaultRecord) -> str:
    where = f"at {record.at:.0%} ({record.elapsed:.0f} s)"
    if record.fault.kind == "consumer":
        return f"consumer SIGKILL {where}, successor ready in {record.down:.1f} s"
    text = (
        f"broker SIGKILL {where}, back after {record.down:.1f} s (publishing bus while down: "
        f"{record.state_down or '?'})"
    )
    if record.resumed is None:
        return text + ", no publish left to resume"
    return text + f", first publish {record.resumed:.2f} s later (bus {record.state_after})"


def _through(result: Result) -> float:
    seconds = result.publish_seconds + result.drain_seconds
    done = result.ledger.handled.unique + result.ledger.dead.unique
    return done / seconds if seconds else 0.0


def _where(result: Result) -> str:
    lost = len(result.ledger.missing())
    if not lost:
        return ""
    if result.lost_stored is None:
        return " (the transport cannot replay: not audited)"
    found, read = result.lost_stored
    if not read:
        return " (a replay from the earliest by a new group read nothing at all: no audit)"
    return (
        f" (a replay by a new group read {read:,} messages and found {found:,} of them: stored, "
        f"so skipped by the consumer side; {lost - found:,} not found, gone from the broker "
        "or not reached by the replay)"
    )


def print_result(result: Result) -> None:
    ledger, stats = result.ledger, result.stats
    published = len(ledger.published)
    failures = result.failures()
    print(f"\n## {result.mode.name}: {result.mode.title}, {result.target}")
    if result.error:
        print(f"  could not run: {result.error}")
        return
    rate = published / result.publish_seconds if result.publish_seconds else 0.0
    rows = [
        (
            "published",
            f"{_n(published)} in {result.publish_seconds:.0f} s ({_n(rate)} msg/s), "
            f"of which poison {_n(len(ledger.poison))}",
        ),
        (
            "handled",
            f"{_n(ledger.handled.unique)} unique; end to end {_n(_through(result))} "
            "msg/s (handled or dead-lettered, over publishing and drain)",
        ),
        ("lost", _n(len(ledger.missing())) + _where(result)),
        (
            "duplicates",
            f"{_n(ledger.handled.duplicates)} handled twice or more, "
            f"{_n(ledger.dead.duplicates)} dead letters stored twice or more",
        ),
        (
            "dead-lettered",
            f"{_n(ledger.dead.unique)} (poison {_n(len(ledger.poison))}), "
            f"reasons {dict(ledger.dead_reasons)}",
        ),
        ("consumer RSS", _memory(result)),
        (
            "drain",
            f"{result.drain_seconds:.0f} s after the last publish"
            + ("" if result.settled else " (gave up: nothing new arrived)"),
        ),
        (
            "publish retries",
            f"{dict(stats.retried) or 'none'}; hung {stats.hangs}; "
            f"untyped {dict(stats.untyped) or 'none'}",
        ),
    ]
    for name, text in stats.examples.items():
        rows.append((f"  {name}", text))
    rows += [("fault", _fault(record)) for record in result.faults]
    rows.append(("mode time", f"{result.total_seconds:.0f} s (brokers started to stopped)"))
    rows.append(("files", result.folder))
    rows.append(("verdict", "PASS" if not failures else "FAIL: " + "; ".join(failures)))
    for name, text in rows:
        print(f"  {name:<16} {text}")
    lost = sorted(ledger.missing())
    if lost:
        print(f"  first lost numbers: {lost[:20]}")
