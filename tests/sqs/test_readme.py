"""The README's SQS example runs against the tests' endpoint, in a namespace deleted afterwards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.readme_examples import examples, run_example

pytestmark = pytest.mark.sqs


@pytest.mark.parametrize("source", examples("sqs"))
def test_readme_example(source: str, namespace_url: Callable[..., str], tmp_path: Path) -> None:
    out = run_example(source, tmp_path, {"AMB_URL": namespace_url()})
    assert "billing charged [{'order': 1, 'total': 30}]" in out
