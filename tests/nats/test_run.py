"""``amb run`` on JetStream: a SIGTERM mid-handler loses nothing and repeats nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner_cases import check_graceful_stop

pytestmark = pytest.mark.nats


def test_graceful_stop_on_jetstream(nats_url: str, stream_prefix: str, tmp_path: Path) -> None:
    sep = "&" if "?" in nats_url else "?"
    check_graceful_stop(
        f"{nats_url}{sep}mode=jetstream&stream_prefix={stream_prefix}&storage=memory", tmp_path
    )
