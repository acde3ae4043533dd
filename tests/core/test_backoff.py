"""amb_core.backoff: the delays every reconnect loop waits."""

from __future__ import annotations

import itertools

import pytest

from amb_core.backoff import Backoff


def test_delays_double_up_to_the_cap() -> None:
    backoff = Backoff(initial=0.05, cap=1.0)
    assert list(itertools.islice(backoff, 7)) == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_reset_starts_again_and_failing_says_whether_it_waited() -> None:
    backoff = Backoff(initial=0.1, cap=5.0, factor=3)
    assert not backoff.failing and backoff.peek() == 0.1
    assert [backoff.next(), backoff.next()] == [0.1, pytest.approx(0.3)]
    assert backoff.failing and backoff.peek() == pytest.approx(0.9)
    backoff.reset()
    assert not backoff.failing and backoff.next() == 0.1


def test_an_initial_delay_above_the_cap_is_capped() -> None:
    assert Backoff(initial=3, cap=2).next() == 2


def test_jitter_spreads_within_its_fraction() -> None:
    delays = [Backoff(initial=1.0, cap=1.0, jitter=0.2).next() for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert len(set(delays)) > 1, "jitter must vary the delay"


@pytest.mark.parametrize(
    "bad",
    [{"initial": 0}, {"cap": -1}, {"factor": 0.5}, {"jitter": 1.0}, {"jitter": -0.1}],
)
def test_nonsense_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**bad)
