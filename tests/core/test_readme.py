"""Every Python example in the README that needs no broker runs and checks itself (each asserts
what it shows); the backends' examples run in their own test folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readme_examples import examples, run_example

EXAMPLES = examples(None)


def test_the_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("source", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_readme_example_runs(source: str, tmp_path: Path) -> None:
    run_example(source, tmp_path)
