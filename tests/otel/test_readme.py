"""The README's ``# needs: otel`` examples, each in a fresh process (they install SDK providers,
which OpenTelemetry allows once per process)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from amb_core.testing.servers import skip_or_fail
from tests.readme_examples import examples, run_example

EXAMPLES = examples("otel")


def test_the_readme_shows_tracing_and_prometheus() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("source", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_readme_otel_example_runs(source: str, tmp_path: Path) -> None:
    if "prometheus" in source and importlib.util.find_spec("prometheus_client") is None:
        skip_or_fail("prometheus_client is not installed (the otel nox session installs it)")
    run_example(source, tmp_path)
