"""The README's Redis Cluster example runs against the tests' cluster, in a namespace of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readme_examples import examples, run_example

pytestmark = [pytest.mark.redis, pytest.mark.cluster]


@pytest.mark.parametrize("source", examples("redis_cluster"))
def test_readme_example(
    source: str, redis_cluster_url: str, namespace: str, tmp_path: Path
) -> None:
    sep = "&" if "?" in redis_cluster_url else "?"
    url = f"{redis_cluster_url}{sep}namespace={namespace}"
    assert "10 orders handled" in run_example(source, tmp_path, {"AMB_URL": url})
