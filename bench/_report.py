"""Small helpers shared by the benchmark scripts: timing, percentiles and aligned output."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

__all__ = ["Figure", "alternate", "measure", "percentile", "print_table"]


class Figure:
    """Throughput and CPU cost of one case."""

    def __init__(
        self,
        name: str,
        count: int,
        seconds: float,
        cpu: float,
        spread: tuple[float, float] | None = None,
    ) -> None:
        self.name = name
        self.count = count
        self.seconds = seconds
        self.cpu = cpu
        self.spread = spread  # the slowest and the fastest run's rate, where runs were repeated

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.count * 1e6


async def measure(
    name: str, count: int, run: Callable[[], Awaitable[Any]], repeat: int = 3
) -> Figure:
    """Median of ``repeat`` runs of ``run`` (which handles ``count`` messages)."""
    figures = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        await run()
        figures.append(Figure(name, count, time.perf_counter() - wall, time.process_time() - cpu))
    figures.sort(key=lambda f: f.rate)
    middle = figures[len(figures) // 2]
    middle.spread = (figures[0].rate, figures[-1].rate)
    return middle


async def _timed(name: str, count: int, run: Callable[[], Awaitable[Any]]) -> Figure:
    wall, cpu = time.perf_counter(), time.process_time()
    await run()
    return Figure(name, count, time.perf_counter() - wall, time.process_time() - cpu)


def _median_figure(runs: list[Figure]) -> Figure:
    runs = sorted(runs, key=lambda f: f.rate)
    middle = runs[len(runs) // 2]
    middle.spread = (runs[0].rate, runs[-1].rate)
    return middle


async def alternate(
    cases: Mapping[str, tuple[int, Callable[[], Awaitable[Any]]]], rounds: int
) -> list[Figure]:
    """Each case once per round, ``rounds`` rounds, so that a shared machine's load hits every
    case alike; the median run of each, in the order given."""
    runs: dict[str, list[Figure]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (count, run) in cases.items():
            runs[name].append(await _timed(name, count, run))
    return [_median_figure(r) for r in runs.values()]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_table(title: str, figures: list[Figure], baseline: Figure | None = None) -> None:
    """The figures as a table; the rate is the median run's, ``runs`` the slowest and the fastest
    run's rate (a shared machine's noise, shown rather than hidden)."""
    print(f"\n## {title}")
    print(f"{'case':48} {'msg/s':>12} {'CPU us/msg':>11} {'ratio':>7} {'runs msg/s':>14}")
    for figure in figures:
        ratio = f"{figure.rate / baseline.rate:6.2f}x" if baseline else ""
        runs = ""
        if figure.spread is not None and figure.spread[0] != figure.spread[1]:
            runs = f"{_short(figure.spread[0])}-{_short(figure.spread[1])}"
        print(f"{figure.name:48} {figure.rate:12,.0f} {figure.cpu_us:11.2f} {ratio:>7} {runs:>14}")


def _short(rate: float) -> str:
    """A rate in three significant figures: 176, 33.0k, 1.23M."""
    if rate >= 1e6:
        return f"{rate / 1e6:.3g}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.3g}k"
    return f"{rate:.3g}"


def median(values: list[float]) -> float:
    return statistics.median(values)
