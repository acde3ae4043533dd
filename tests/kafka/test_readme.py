"""The README's Kafka example runs against the tests' broker (its topic is unique per run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readme_examples import examples, run_example

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("source", examples("kafka"))
def test_readme_example(source: str, kafka_url: str, tmp_path: Path) -> None:
    out = run_example(source, tmp_path, {"AMB_URL": kafka_url})
    assert "'account-0': [0, 3, 6, 9]" in out
