"""Fixtures shared by every test folder: the wheelhouse and fresh virtual environments.

Packaging tests install what a user installs, the way a user does: by name with extras
(``agent-message-bus[redis]``), into a new venv, from a local index that holds the wheels built from
this checkout and the third-party wheels they need (downloaded once per run), with no other index
(``--no-index --find-links``): so the names, the extras and the dependencies are what is tested,
and nothing of the same name elsewhere can stand in for ours.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from amb_core.testing.servers import skip_or_fail

ROOT = Path(__file__).parents[1]
TINY_PLUGIN = ROOT / "tests" / "tiny_plugin"
"""The guide's worked example, a plugin distribution of its own (docs/writing-a-backend.md)."""
# Its source is importable in every test run, but it is not installed there: its entry point (a
# middleware and a dead-letter handler for every bus) takes effect only where the packaging tests
# install it, in a fresh venv.
sys.path.insert(0, str(TINY_PLUGIN / "src"))
DISTRIBUTIONS = sorted(p.name for p in ROOT.glob("amb_*") if (p / "pyproject.toml").is_file())
EXTRAS = [d.removeprefix("amb_") for d in DISTRIBUTIONS if d != "amb_core"] + ["trio"]
DRIVERS = {"redis": "redis", "nats": "nats-py", "kafka": "confluent-kafka", "sqs": "aiobotocore"}


def _uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    skip_or_fail("uv is needed to build wheels and venvs (pip install uv)")


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local index: wheels of every distribution in this checkout, built once per test session,
    and every wheel they depend on (with all extras), downloaded beside them."""
    out = tmp_path_factory.mktemp("wheelhouse")
    for dist in DISTRIBUTIONS:
        subprocess.run(
            [*_uv(), "build", "--wheel", "--out-dir", str(out), str(ROOT / dist)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    fetched = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "-q", "-d", str(out)),
            *("--find-links", str(out), f"agent-message-bus[{','.join(EXTRAS)}]"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert fetched.returncode == 0, fetched.stderr[-3000:]
    return out


@pytest.fixture
def fresh_venv(wheelhouse: Path, tmp_path: Path) -> Callable[[str], Path]:
    """``install(extras)`` makes a new venv with ``agent-message-bus[extras]`` installed by name
    from the wheelhouse alone; returns its bin folder."""

    def install(extras: str = "") -> Path:
        venv = tmp_path / "venv"
        subprocess.run(
            [*_uv(), "venv", "-q", "-p", sys.executable, str(venv)], check=True, timeout=120
        )
        spec = f"agent-message-bus[{extras}]" if extras else "agent-message-bus"
        done = subprocess.run(
            [
                *(*_uv(), "pip", "install", "-q", "-p", str(venv / "bin" / "python")),
                *("--no-index", "--find-links", str(wheelhouse), spec),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        return venv / "bin"

    return install


def hookspec_names() -> list[str]:
    """The hooks :mod:`amb_core.hookspecs` defines (pluggy marks each with ``amb_spec``)."""
    from amb_core import hookspecs

    return sorted(name for name, f in vars(hookspecs).items() if hasattr(f, "amb_spec"))


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


_ROUND_TRIP = """
import importlib, pathlib, sys
import anyio
from amb_core import MessageBus

url, topic, module, seed = sys.argv[1:]
backend = importlib.import_module(module)
assert (pathlib.Path(backend.__file__).parent / "py.typed").is_file(), "py.typed missing"

async def main():
    async with MessageBus.from_url(url) as bus:
        assert type(bus.transport) is getattr(backend, seed), type(bus.transport)
        got = []
        await bus.subscribe(topic, got.append)
        await bus.publish(topic, {"ok": True})
        with anyio.fail_after(60):
            while not got:
                await anyio.sleep(0.01)
        print(type(bus.transport).__name__, got[0].payload)

anyio.run(main)
"""


def check_backend_install(
    fresh_venv: Callable[[str], Path], backend: str, seed: str, url: str
) -> None:
    """What a user gets from ``pip install "agent-message-bus[<backend>]"``: the backend's driver and no
    other, ``amb backends`` listing it, and a real round trip through the broker at ``url`` using
    the seed's class name, all in a fresh venv built from the wheels."""
    bin_dir = fresh_venv(backend)
    assert_only_driver(bin_dir, backend)
    listed = subprocess.run(
        [str(bin_dir / "amb"), "backends"], capture_output=True, text=True, check=True
    )
    assert any(line.startswith(backend) for line in listed.stdout.splitlines()), listed.stdout
    topic = f"pkgcheck.{backend}"
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", _ROUND_TRIP, url, topic, f"amb_{backend}", seed],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("Transport {'ok': True}"), done.stdout
