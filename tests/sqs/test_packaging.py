"""``agent-message-bus[sqs]`` installs from the wheels with aiobotocore and no other driver, lists the backend
and round-trips a message through the real broker (see ``check_backend_install``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import check_backend_install

pytestmark = [pytest.mark.packaging, pytest.mark.sqs]


def test_sqs_extra_installs_and_is_discovered(
    fresh_venv: Callable[[str], Path], sqs_url: str
) -> None:
    check_backend_install(fresh_venv, "sqs", "SQSBroker", sqs_url)
