"""The conformance suite's footing: the knobs, what a backend provides, and the helpers every case
uses. Split from the cases so that each group of cases lives in a module of its own."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import pytest

from ..bus import MessageBus
from ..deadletter import RetryPolicy
from ..message import Message
from ..transport import Capabilities, Transport

__all__ = ["FAST_RETRY", "ConformanceBase", "RestartableBroker", "wait_until"]

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.02, max_delay=0.1, jitter=0)


async def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str | Callable[[], str] = "condition"
) -> None:
    """Poll ``predicate`` until true; fail the test with ``what`` after ``timeout`` seconds.

    ``what`` may be a callable, evaluated at the failure, to say how far things got.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout:g}s waiting for {said}")
        await anyio.sleep(0.01)


def _progress(expected: list[Any], **lists: list[Message]) -> str:
    """How far each list got, and the first payloads it lacks."""
    parts = []
    for name, got in lists.items():
        missing = [p for p in expected if p not in {m.payload for m in got}]
        parts.append(f"{name}: {len(got)} of {len(expected)}, missing {missing[:10]}")
    return "; ".join(parts)


@attrs.frozen
class RestartableBroker:
    """A broker process a backend's fixture owns, for the cases that kill it.

    :param make_transport: new, unconnected transports on that broker (durable storage where the
        mode is durable, so that what it acknowledged survives a kill).
    :param kill: SIGKILL the broker, as a crash would.
    :param start: start it again on the same address and data; returns once it answers.
    """

    make_transport: Callable[[], Transport]
    kill: Callable[[], None]
    start: Callable[[], None]


class ConformanceBase:
    """Knobs, backend-provided fixtures and helpers (see :class:`TransportConformance`)."""

    many = 2000
    ack_wait = 1.0
    quiet = 0.3
    timeout = 20.0
    duplicates_allowed = 0
    interest_delay = 0.0
    """Seconds a new subscription may take to reach publishers on *other* connections. 0 for a
    single server: ``await bus.subscribe(...)`` returns once the server has it. A cluster whose
    nodes learn of a subscription from each other (NATS routes) needs a moment before a publisher
    on another node sees it; :meth:`collect` and :meth:`interest_spread` wait that long (every
    case that subscribes on one bus and sends from another), and a backend says so in its docs."""

    # -- what a backend provides -----------------------------------------------------------------

    @pytest.fixture
    def make_transport(self) -> Callable[[], Transport]:
        """Override: return a factory of new transports sharing one broker."""
        raise NotImplementedError("override the make_transport fixture")

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        """Override: publish ``body`` to ``topic`` as another program would, with the raw driver and
        no AMB metadata, so that a subscriber of ``topic`` receives it."""
        raise NotImplementedError("override inject_foreign")

    # -- helpers ----------------------------------------------------------------------------------

    @pytest.fixture
    def topic(self) -> str:
        """A prefix no other test uses."""
        return f"conf{uuid.uuid4().hex[:10]}"

    @pytest.fixture(autouse=True)
    def _supported_loop(self, make_transport: Callable[[], Transport], anyio_backend: Any) -> None:
        name = anyio_backend if isinstance(anyio_backend, str) else anyio_backend[0]
        loops = make_transport().event_loops
        if name not in loops:
            pytest.skip(f"transport runs on {sorted(loops)}, not {name}")

    @asynccontextmanager
    async def open_bus(
        self, make_transport: Callable[[], Transport], **options: Any
    ) -> AsyncIterator[MessageBus]:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("drain_timeout", 5.0)
        async with MessageBus(make_transport(), **options) as bus:
            yield bus

    def require(self, transport_or_caps: Transport | Capabilities, *names: str) -> None:
        caps = getattr(transport_or_caps, "capabilities", transport_or_caps)
        missing = [n for n in names if not getattr(caps, n)]
        if missing:
            pytest.skip(f"transport does not declare {', '.join(missing)}")

    def caps(self, make_transport: Callable[[], Transport]) -> Capabilities:
        return make_transport().capabilities

    def assert_each_once(self, got: list[Message], expected: list[Any], what: str) -> None:
        """Every expected payload arrived, nothing else did, and copies beyond the first stay
        within ``duplicates_allowed``."""
        counts = Counter(m.payload for m in got)
        assert sorted(counts) == sorted(expected), f"{what}: none lost, none unknown"
        extra = sum(counts.values()) - len(counts)
        assert extra <= self.duplicates_allowed, (
            f"{what}: {extra} duplicate deliveries: "
            f"{sorted(p for p, n in counts.items() if n > 1)[:10]}"
        )

    async def collect(self, bus: MessageBus, pattern: str, **options: Any) -> list[Message]:
        got: list[Message] = []
        await bus.subscribe(pattern, got.append, **options)
        await self.interest_spread()
        return got

    async def interest_spread(self) -> None:
        """Wait :attr:`interest_delay`: called after subscribing on one bus, before another bus
        (perhaps on another node) sends to the new subscription."""
        if self.interest_delay:
            await anyio.sleep(self.interest_delay)

    async def capture_raw(
        self, transport: Transport, topic: str, publish: Callable[[], Awaitable[Any]]
    ) -> tuple[bytes, Mapping[str, str]]:
        """Override to prove ``headers``: with the raw driver, watch where a message to the AMB
        topic ``topic`` lands on the broker, await ``publish()`` (which publishes one message to
        ``topic``), and return that record's body and broker-native headers as stored. Watching by
        a subscription, wait :meth:`interest_spread` before ``publish()``."""
        raise NotImplementedError("override capture_raw")

    @pytest.fixture
    def restartable_broker(self) -> RestartableBroker:
        """Override with a broker the fixture owns (see :class:`RestartableBroker`) to run the
        cases that kill and restart the broker; by default they skip."""
        pytest.skip(
            "the backend provides no restartable_broker fixture (its broker cannot be "
            "killed and restarted here)"
        )
