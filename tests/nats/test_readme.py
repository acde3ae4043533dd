"""The README's NATS example runs against the tests' NATS server (core NATS: it leaves nothing
behind)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readme_examples import examples, run_example

pytestmark = pytest.mark.nats


@pytest.mark.parametrize("source", examples("nats"))
def test_readme_example(source: str, nats_url: str, tmp_path: Path) -> None:
    out = run_example(source, tmp_path, {"AMB_URL": nats_url})
    assert "{'answer': 42}" in out and "oracle.nobody.home" in out
