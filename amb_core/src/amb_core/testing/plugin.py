"""AMB's pytest plugin (entry point ``pytest11``): ready fixtures, and the event-loop matrix on request.

Installing the library must not change another project's test run, so the plugin only *adds*
things by default: the fixtures ``memory_bus`` (a connected in-memory bus for testing your agents)
and ``memory_transport_factory`` (transports sharing one in-memory hub), and the ``--amb-loop``
option. The event-loop matrix — anyio's ``anyio_backend`` parametrized over asyncio and/or trio —
is switched on only when a project asks: ``--amb-loop asyncio|trio|all`` on the command line, or
``amb_loop = ...`` in its pytest configuration. Otherwise ``anyio_backend`` stays whatever the
project (or anyio's own plugin, asyncio by default) says, and ``@pytest.mark.parametrize(
"anyio_backend", ...)`` works as usual.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from ..bus import MessageBus
from ..memory import MemoryHub, MemoryTransport

__all__ = ["LoopMatrix", "loops_requested", "memory_bus", "memory_transport_factory"]

LOOPS = ("asyncio", "trio", "all")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("amb")
    group.addoption(
        "--amb-loop",
        choices=LOOPS,
        default=None,
        help="run async tests on these event loops: asyncio, trio or all (parametrizes "
        "anyio_backend; off unless given here or as the amb_loop ini option)",
    )
    parser.addini("amb_loop", "event loops for async tests (asyncio, trio or all); off if empty")


def loops_requested(config: pytest.Config) -> list[str] | None:
    """The event loops the project asked for (``--amb-loop`` wins over ``amb_loop``), or None.

    :raises pytest.UsageError: for a value other than asyncio, trio or all.
    """
    choice = config.getoption("--amb-loop") or str(config.getini("amb_loop") or "").strip()
    if not choice:
        return None
    if choice not in LOOPS:
        raise pytest.UsageError(f"amb_loop must be one of {', '.join(LOOPS)}, not {choice!r}")
    return ["asyncio", "trio"] if choice == "all" else [choice]


def pytest_configure(config: pytest.Config) -> None:
    loops = loops_requested(config)
    if loops is not None:
        config.pluginmanager.register(LoopMatrix(loops), "amb-loop-matrix")


class LoopMatrix:
    """Registered only on request: parametrizes ``anyio_backend`` over the chosen loops."""

    def __init__(self, loops: list[str]) -> None:
        self.loops = loops

    @pytest.hookimpl(tryfirst=True)
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "anyio_backend" in metafunc.fixturenames:
            metafunc.parametrize("anyio_backend", self.loops, scope="module")

    @pytest.fixture(scope="module")
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        """The anyio backend of this test, from ``--amb-loop``/``amb_loop``."""
        return str(request.param)


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
