"""AMB's pytest plugin (entry point ``pytest11``): the event-loop option and ready fixtures.

``--amb-loop asyncio|trio|all`` chooses the anyio backends async tests run on (default asyncio), so
nox can run one suite per event loop. Fixtures: ``memory_bus`` (a connected in-memory bus for testing
your agents) and ``memory_transport_factory`` (transports sharing one in-memory hub).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from ..bus import MessageBus
from ..memory import MemoryHub, MemoryTransport

__all__ = ["anyio_backend", "memory_bus", "memory_transport_factory"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("amb")
    group.addoption(
        "--amb-loop",
        choices=("asyncio", "trio", "all"),
        default="asyncio",
        help="event loop(s) for async tests: asyncio (default), trio or all",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "anyio_backend" in metafunc.fixturenames:
        choice = metafunc.config.getoption("--amb-loop")
        loops = ["asyncio", "trio"] if choice == "all" else [choice]
        metafunc.parametrize("anyio_backend", loops, scope="module")


@pytest.fixture(scope="module")
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The anyio backend of this test, from ``--amb-loop`` (parametrized in pytest_generate_tests)."""
    return str(getattr(request, "param", "asyncio"))


@pytest.fixture
def memory_transport_factory() -> Callable[[], MemoryTransport]:
    """New in-memory transports that share one private hub, like clients of one broker."""
    hub = MemoryHub()
    return lambda: MemoryTransport(hub)


@pytest.fixture
async def memory_bus() -> AsyncIterator[MessageBus]:
    """A connected bus over a private in-memory transport."""
    async with MessageBus(MemoryTransport()) as bus:
        yield bus
