"""The SQS/SNS endpoint for these tests: ``AMB_SQS_URL`` when set, else a throwaway moto server.

moto's in-process mock does not work with aiobotocore, so the fixture runs moto's server mode on a
free port for the session. Credentials come from the standard AWS chain: with moto, dummy ones are
put in the environment (moto accepts any); with ``AMB_SQS_URL``, the real chain is used untouched.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import pytest

from amb_core.testing.servers import ServerProcess, find_binary, skip_or_fail
from amb_sqs import SQSTransport

DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(autouse=True)
def _asyncio_only(request: pytest.FixtureRequest) -> None:
    """aiobotocore runs on asyncio only: under ``--amb-loop trio`` these tests skip."""
    if "anyio_backend" in request.fixturenames:
        backend = request.getfixturevalue("anyio_backend")
        name = backend if isinstance(backend, str) else backend[0]
        if name != "asyncio":
            pytest.skip("the SQS transport runs on asyncio only (aiobotocore)")


def moto_ready(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2) as response:
        return bool(response.status == 200)


def start_moto(env: dict[str, str] | None = None) -> ServerProcess:
    """A moto server on a free port (``env`` adds variables, e.g. to turn IAM checks on)."""
    binary = find_binary("moto_server")
    argv = [binary] if binary else [sys.executable, "-m", "moto.server"]
    server = ServerProcess([*argv, "-H", "127.0.0.1", "-p", "{port}"], moto_ready, name="moto")
    if env:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            return server.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return server.start()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[ServerProcess | None]:
    """The session's moto server (``None`` when ``AMB_SQS_URL`` points elsewhere)."""
    if os.environ.get("AMB_SQS_URL"):
        yield None
        return
    for key, value in DUMMY_AWS.items():
        os.environ.setdefault(key, value)
    try:
        import moto.server  # noqa: F401
    except ImportError:
        skip_or_fail("moto[server] is not installed and AMB_SQS_URL is not set")
    try:
        server = start_moto()
    except RuntimeError as exc:
        skip_or_fail(f"moto server did not start: {exc}")
    yield server
    server.close()


@pytest.fixture(scope="session")
def sqs_base_url(moto_server: ServerProcess | None) -> str:
    """``sqs://`` URL of the endpoint, without a namespace."""
    url = os.environ.get("AMB_SQS_URL")
    if url:
        return url
    assert moto_server is not None
    endpoint = f"http://127.0.0.1:{moto_server.port}"
    return "sqs://?" + urlencode({"region": "us-east-1", "endpoint": endpoint, "wait": "1"})


def with_namespace(base: str, namespace: str, **options: str) -> str:
    sep = "&" if "?" in base else "?"
    return base + sep + urlencode({"namespace": namespace, **options})


_made: list[str] = []


def delete_namespaces(urls: list[str]) -> None:
    """Remove what tests created under these URLs' namespaces (topics, queues), in a thread with
    its own event loop."""

    async def clean() -> None:
        for url in urls:
            for fifo in (False, True):
                transport = SQSTransport(url, fifo=fifo, dlq_archive=False)
                try:
                    await transport.connect()
                    await transport.delete_namespace()
                except Exception as exc:  # cleanup goes on with the next namespace
                    logging.getLogger(__name__).warning("cleaning %s failed: %r", url, exc)
                finally:
                    await transport.aclose()

    thread = threading.Thread(target=asyncio.run, args=(clean(),))
    thread.start()
    thread.join(300)


@pytest.fixture(scope="session")
def _cleanup_shared_endpoint(moto_server: ServerProcess | None) -> Iterator[None]:
    """On a shared endpoint (``AMB_SQS_URL``), delete every namespace the tests made, at the end;
    a throwaway moto server takes its state with it."""
    yield
    if moto_server is None and _made:
        delete_namespaces(_made)


@pytest.fixture
def namespace_url(sqs_base_url: str, _cleanup_shared_endpoint: None) -> Callable[..., str]:
    """``make(**options)``: a URL with a fresh namespace and extra query options."""

    def make(**options: str) -> str:
        _made.append(with_namespace(sqs_base_url, f"t{uuid.uuid4().hex[:12]}", **options))
        return _made[-1]

    return make


@pytest.fixture
def sqs_url(namespace_url: Callable[..., str]) -> str:
    """A URL with a namespace of its own (its own SNS topic), so tests never see each other."""
    return namespace_url()


@pytest.fixture
def own_moto(moto_server: ServerProcess | None) -> Iterator[ServerProcess]:
    """A moto server owned by one test (to kill and restart it); needs the local moto, not
    AMB_SQS_URL."""
    if moto_server is None:
        pytest.skip("uses a fixture-owned moto server; AMB_SQS_URL points elsewhere")
    server = start_moto()
    yield server
    server.close()


def moto_url(server: ServerProcess, namespace: str = "faults", **options: str) -> str:
    base = f"sqs://?region=us-east-1&endpoint=http://127.0.0.1:{server.port}&wait=1"
    return with_namespace(base, namespace, **options)


@asynccontextmanager
async def raw_client(transport: SQSTransport, service: str) -> AsyncIterator[Any]:
    """A plain aiobotocore client for ``service`` (``"sqs"`` or ``"sns"``) on the transport's
    endpoint and region, as another program would open it: the transport is read for where its
    broker is, never used to send."""
    from aiobotocore.session import get_session

    async with get_session().create_client(
        service, region_name=transport.config.region, endpoint_url=transport.config.endpoint
    ) as client:
        yield client
