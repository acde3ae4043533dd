"""``amb run`` on SQS: a SIGTERM mid-handler loses nothing and repeats nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner_cases import check_graceful_stop

pytestmark = pytest.mark.sqs


def test_graceful_stop_on_sqs(sqs_url: str, tmp_path: Path) -> None:
    check_graceful_stop(sqs_url, tmp_path)
