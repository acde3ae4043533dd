"""``agent-message-bus[kafka]`` installs from the wheels with confluent-kafka and no other driver, lists the backend
and round-trips a message through the real broker (see ``check_backend_install``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import check_backend_install

pytestmark = [pytest.mark.packaging, pytest.mark.kafka]


def test_kafka_extra_installs_and_is_discovered(
    fresh_venv: Callable[[str], Path], kafka_url: str
) -> None:
    check_backend_install(fresh_venv, "kafka", "KafkaBroker", kafka_url)
