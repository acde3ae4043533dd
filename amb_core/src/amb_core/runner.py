"""``amb run module:bus``: an agent as a service that starts, drains and stops correctly.

The target is a :class:`MessageBus` made at import time (its handlers subscribed with the decorator
before it connects), or a factory returning one (plain or async). The runner connects it, waits
until every subscription is established (then the service is *ready*), and serves until a signal:

* the first SIGTERM or SIGINT stops taking new deliveries and lets the handlers in flight finish
  within ``grace`` seconds (the bus's ``drain_timeout``); what finished is settled; a handler still
  running after that is cancelled and its message left unacknowledged, so a durable transport
  redelivers it to the next consumer (nothing lost). Then the bus closes and the process exits 0.
* a second signal while draining stops at once: handlers are cancelled and the exit code is 130.

Readiness (connected, every subscription established) and liveness are served over HTTP by
:mod:`.health` when a port is given, and written to ``ready_file`` for a supervising process
(:mod:`.supervisor`, ``--workers``).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from .bus import MessageBus
from .errors import ConfigurationError
from .transport import ConnectionState

__all__ = ["HARD_STOP_EXIT", "is_ready", "load_target", "resolve_bus", "run_service"]

log = logging.getLogger("amb.run")
HARD_STOP_EXIT = 130
"""Exit code after a second signal cut the drain short."""


def load_target(spec: str) -> Any:
    """Import ``package.module:attribute`` (the attribute may be dotted) and return it.

    :raises ConfigurationError: naming what is wrong with ``spec``.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(
            f"{spec!r} is not MODULE:ATTRIBUTE (for example 'myagents.app:bus')"
        )
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, "")  # as `python -m` does: the current directory's modules import
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(f"{module_name!r} has no attribute {attribute!r}") from None
    return target


async def resolve_bus(target: Any) -> MessageBus:
    """The bus ``target`` is, or returns when called (awaited if it is async).

    :raises ConfigurationError: when it is neither.
    """
    if isinstance(target, MessageBus):
        return target
    if callable(target):
        made = target()
        if inspect.isawaitable(made):
            made = await made
        if isinstance(made, MessageBus):
            return made
        raise ConfigurationError(f"{target!r} returned {type(made).__name__}, not a MessageBus")
    raise ConfigurationError(f"{target!r} is neither a MessageBus nor a factory of one")


def is_ready(bus: MessageBus) -> bool:
    """Connected, and every subscription established: what a readiness probe asks."""
    return bus.state == ConnectionState.CONNECTED and all(s.active for s in bus.subscribers)


async def _report_readiness(bus: MessageBus, ready_file: Path) -> None:
    """Keep ``ready_file`` saying ``1`` or ``0`` for a supervising process."""
    said: bool | None = None
    while True:
        now = is_ready(bus)
        if now != said:
            await anyio.Path(ready_file).write_text("1" if now else "0")
            said = now
        await anyio.sleep(0.5)


async def run_service(
    spec: str,
    *,
    grace: float = 30.0,
    health_port: int | None = None,
    health_host: str = "0.0.0.0",
    ready_file: Path | None = None,
    on_ready: Callable[[MessageBus], None] | None = None,
) -> int:
    """Serve the bus named by ``spec`` until a signal; the exit code (0, or 130 after a second
    signal). See the module for the stop sequence.

    :raises ConfigurationError: when ``spec`` names no bus.
    :raises TransportError: when the broker cannot be reached or a subscription fails.
    """
    bus = await resolve_bus(load_target(spec))
    bus.drain_timeout = grace
    hard = False
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:
            # The bus's own task group opens inside this scope, so that a second signal can cut
            # its drain short and the scopes still close in the order they opened.
            with anyio.CancelScope() as draining:
                await bus.connect()
                try:
                    for subscriber in bus.subscribers:
                        await subscriber.wait_ready()
                except BaseException:
                    await bus.aclose()
                    raise
                if health_port is not None:
                    from .health import serve_health

                    await tg.start(
                        serve_health,
                        health_port,
                        health_host,
                        lambda: is_ready(bus),
                        lambda: bus.state != ConnectionState.CLOSED,
                    )
                if ready_file is not None:
                    tg.start_soon(_report_readiness, bus, ready_file)
                log.info(
                    "serving %d subscriptions (%s) over %r",
                    len(bus.subscribers),
                    ", ".join(s.pattern for s in bus.subscribers),
                    bus.transport,
                )
                if on_ready is not None:
                    on_ready(bus)
                async for signum in signals:
                    log.info(
                        "%s: stopping; handlers in flight have %gs to finish (a second signal "
                        "stops at once)",
                        signal.Signals(signum).name,
                        grace,
                    )
                    break

                async def second_signal() -> None:
                    nonlocal hard
                    async for signum in signals:
                        log.warning("%s again: stopping at once", signal.Signals(signum).name)
                        hard = True
                        draining.cancel()
                        return

                tg.start_soon(second_signal)
                await bus.aclose()
            tg.cancel_scope.cancel()
    log.info("stopped%s", " at once" if hard else "")
    return HARD_STOP_EXIT if hard else 0
