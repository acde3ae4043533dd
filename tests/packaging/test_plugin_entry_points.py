"""Every hook AMB defines takes effect through a plugin installed the way a third party's is: the
example plugin distribution (tests/tiny_plugin, the worked example of docs/writing-a-backend.md)
built into a wheel and installed by name, next to agent-message-bus, into a fresh venv."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TINY_PLUGIN, hookspec_names

pytestmark = pytest.mark.packaging
CHECK = Path(__file__).with_name("tiny_plugin_check.py")


@pytest.fixture(scope="module")
def tiny_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the example plugin's wheel, built from its source folder."""
    out = tmp_path_factory.mktemp("tiny-wheel")
    uv = shutil.which("uv")
    assert uv, "uv is needed (fresh_venv skips or fails without it first)"
    subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(out), str(TINY_PLUGIN)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def test_every_hook_takes_effect_through_an_installed_entry_point(
    fresh_venv: Callable[[str], Path], wheelhouse: Path, tiny_wheels: Path
) -> None:
    bin_dir = fresh_venv("")
    installed = subprocess.run(
        [
            *(str(shutil.which("uv")), "pip", "install", "-q", "-p", str(bin_dir / "python")),
            *("--no-index", "--find-links", str(wheelhouse), "--find-links", str(tiny_wheels)),
            "amb-tiny-example",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    listed = subprocess.run(
        [str(bin_dir / "amb"), "backends"], capture_output=True, text=True, check=True
    )
    tiny = [line.split() for line in listed.stdout.splitlines() if line.startswith("tiny ")]
    assert len(tiny) == 1, listed.stdout
    assert tiny[0][1:3] == ["amb-tiny-example", "0.1.0"], tiny
    assert tiny[0][-1] == "consumer_groups,ordered", tiny
    done = subprocess.run(
        [str(bin_dir / "python"), str(CHECK)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    proved = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("proved ")]
    assert sorted(proved) == sorted(hookspec_names()), done.stdout
