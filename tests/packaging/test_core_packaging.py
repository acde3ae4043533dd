"""agent-message-bus alone installs from its wheel with only pluggy, anyio and attrs, and works."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import assert_only_driver, installed_distributions

pytestmark = pytest.mark.packaging


def test_core_wheel_installs_alone_and_runs(fresh_venv: Callable[[str], Path]) -> None:
    bin_dir = fresh_venv("")
    assert_only_driver(bin_dir, None)
    names = installed_distributions(bin_dir)
    assert {"agent-message-bus", "pluggy", "anyio", "attrs"} <= names
    backends = subprocess.run(
        [str(bin_dir / "amb"), "backends"], capture_output=True, text=True, check=True
    )
    assert backends.stdout.startswith("memory") and len(backends.stdout.splitlines()) == 1
    demo = subprocess.run(
        [str(bin_dir / "amb"), "demo"], capture_output=True, text=True, timeout=60
    )
    assert demo.returncode == 0 and "3 tasks done by the group" in demo.stdout
    typed = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "import amb_core, pathlib; print((pathlib.Path(amb_core.__file__).parent / 'py.typed').exists())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert typed.stdout.strip() == "True"
