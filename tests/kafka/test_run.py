"""``amb run`` on Kafka: a SIGTERM mid-handler loses nothing and repeats nothing (concurrency 1:
the offset commit follows each handled record)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner_cases import check_graceful_stop

pytestmark = pytest.mark.kafka


def test_graceful_stop_on_kafka(kafka_url: str, tmp_path: Path) -> None:
    check_graceful_stop(kafka_url, tmp_path)
