"""``amb-core[sqs]`` installs from built wheels into a fresh venv, finds the backend through its
entry point, and brings aiobotocore but no other backend's driver."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import assert_only_driver

pytestmark = [pytest.mark.packaging, pytest.mark.sqs]


def test_sqs_extra_installs_and_is_discovered(fresh_venv: Callable[[str], Path]) -> None:
    bin_dir = fresh_venv("sqs")
    assert_only_driver(bin_dir, "sqs")
    backends = subprocess.run(
        [str(bin_dir / "amb"), "backends"], capture_output=True, text=True, check=True
    )
    line = next(x for x in backends.stdout.splitlines() if x.startswith("sqs"))
    assert "amb-sqs" in line and "consumer_groups" in line, backends.stdout
    check = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "from amb_core import MessageBus; from amb_sqs import SQSBroker; import pathlib, amb_sqs;"
            "bus = MessageBus.from_url('sqs://?region=us-east-1');"
            "print(type(bus.transport) is SQSBroker,"
            " (pathlib.Path(amb_sqs.__file__).parent / 'py.typed').exists())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.split() == ["True", "True"]
