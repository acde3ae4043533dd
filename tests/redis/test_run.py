"""``amb run`` on Redis Streams: a SIGTERM mid-handler loses nothing and repeats nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner_cases import check_graceful_stop, check_second_signal, check_workers

pytestmark = pytest.mark.redis


def test_graceful_stop_on_streams(redis_url: str, namespace: str, tmp_path: Path) -> None:
    check_graceful_stop(f"{redis_url}?namespace={namespace}", tmp_path)


def test_a_second_signal_stops_at_once(redis_url: str, namespace: str, tmp_path: Path) -> None:
    check_second_signal(f"{redis_url}?namespace={namespace}", tmp_path)


def test_workers_share_the_group_and_come_back(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    check_workers(f"{redis_url}?namespace={namespace}", tmp_path)
