"""The consumer's resident memory over the run, and the quarter, half and end samples taken from it.

The parent reads ``VmRSS`` of the consumer process every quarter second and notes how many
messages had been handled by then. A quarter and half "of the run" are taken on the consumer's own
progress (when it had handled a quarter and a half of what it handles in all), not on the
publishers': on a broker where the consumer lags far behind (Tansu on S3, SQS on moto) the half-way
point of publishing finds a consumer that has barely started, and comparing that with its end
would measure its buffers filling up, not a leak. Both consumer kills happen before a quarter of
the messages are published, so all three samples come from the last consumer process (each sample
names its process).
"""

from __future__ import annotations

import attrs

__all__ = ["FLATNESS", "MemoryTrace", "Sample"]

FLATNESS = 0.10  # the end's resident memory within 10 % of the half's


@attrs.frozen
class Sample:
    handled: int  # messages handled (unique) when it was read
    rss_kib: int
    generation: int  # which consumer process


@attrs.define
class MemoryTrace:
    samples: list[Sample] = attrs.field(factory=list)

    def add(self, handled: int, rss_kib: int | None, generation: int) -> None:
        if rss_kib is not None:
            self.samples.append(Sample(handled, rss_kib, generation))

    def at(self, fraction: float) -> Sample | None:
        """The first sample of the last consumer process once it had handled ``fraction`` of the
        run's final count (1.0: the last sample)."""
        if not self.samples:
            return None
        last = self.samples[-1]
        if fraction >= 1.0:
            return last
        target = fraction * last.handled
        ours = [s for s in self.samples if s.generation == last.generation]
        return next((s for s in ours if s.handled >= target), None)

    def growth(self) -> float | None:
        """End against half, as a fraction of the half (None when either is missing)."""
        half, end = self.at(0.5), self.at(1.0)
        if half is None or end is None or not half.rss_kib:
            return None
        return (end.rss_kib - half.rss_kib) / half.rss_kib
