"""The README's Redis example runs against the tests' Redis, in a namespace of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readme_examples import examples, run_example

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("source", examples("redis"))
def test_readme_example(source: str, redis_url: str, namespace: str, tmp_path: Path) -> None:
    sep = "&" if "?" in redis_url else "?"
    out = run_example(source, tmp_path, {"AMB_URL": f"{redis_url}{sep}namespace={namespace}"})
    assert "10 frames rendered" in out
