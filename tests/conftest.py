"""Fixtures shared by every test folder: the wheelhouse and fresh virtual environments.

Packaging tests install what a user installs: wheels built from this checkout, into a new venv. The
amb-core wheel is installed *by path* (``amb_core-…whl[extra]``) because PyPI has an unrelated
``amb-core`` project; the backend distributions resolve from the wheelhouse, their drivers from PyPI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DISTRIBUTIONS = sorted(p.name for p in ROOT.glob("amb_*") if (p / "pyproject.toml").is_file())
DRIVERS = {"redis": "redis", "nats": "nats-py", "kafka": "confluent-kafka", "sqs": "aiobotocore"}


def _uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    pytest.skip("uv is needed to build wheels and venvs (pip install uv)")


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of every distribution in this checkout, built once per test session."""
    out = tmp_path_factory.mktemp("wheelhouse")
    for dist in DISTRIBUTIONS:
        subprocess.run(
            [*_uv(), "build", "--wheel", "--out-dir", str(out), str(ROOT / dist)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return out


@pytest.fixture
def fresh_venv(wheelhouse: Path, tmp_path: Path) -> Callable[[str], Path]:
    """``install(extras)`` makes a new venv with ``amb-core[extras]`` from the wheels; returns its bin."""

    def install(extras: str = "") -> Path:
        venv = tmp_path / "venv"
        subprocess.run(
            [*_uv(), "venv", "-q", "-p", sys.executable, str(venv)], check=True, timeout=120
        )
        core = next(wheelhouse.glob("amb_core-*.whl"))
        spec = f"{core}[{extras}]" if extras else str(core)
        done = subprocess.run(
            [
                *_uv(),
                "pip",
                "install",
                "-q",
                "-p",
                str(venv / "bin" / "python"),
                "--find-links",
                str(wheelhouse),
                spec,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        return venv / "bin"

    return install


def installed_distributions(bin_dir: Path) -> set[str]:
    """Normalised names of the distributions installed in a venv."""
    done = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] for d in m.distributions()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return {name.strip().lower().replace("_", "-") for name in done.stdout.split()}


def assert_only_driver(bin_dir: Path, backend: str | None) -> None:
    """The venv has ``backend``'s driver and no other backend's."""
    names = installed_distributions(bin_dir)
    for name, driver in DRIVERS.items():
        if name == backend:
            assert driver in names, f"{driver} missing"
        else:
            assert driver not in names, (
                f"{driver} installed although only {backend or 'core'} was asked for"
            )
