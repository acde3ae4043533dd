"""The example's plugin module: one implementation of every AMB hook, found through the entry point
``[project.entry-points.amb] tiny = "amb_tiny.plugin"`` in this distribution's pyproject.toml.

Hooks only register things; the work happens in what they register. What the dead-letter handler
and the middleware see is kept here, bounded, so that a program can check that each took effect.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from amb_core import DeadLetter, Message, MessageBus, Middleware, Rule, hookimpl
from amb_core.middleware import Call, Send
from amb_core.plugins import (
    DeadLetterRegistry,
    MiddlewareRegistry,
    RouterRegistry,
    TransportRegistry,
)

from .transport import TinyTransport

DISTRIBUTION = "amb-tiny-example"
DEAD_LETTERS: dict[str, DeadLetter] = {}
"""Dead letters by message id: the last 1,000 the handler kept."""
SEEN: deque[tuple[str, str]] = deque(maxlen=1000)
"""``("publish" | "receive", topic)`` for the last 1,000 messages the middleware saw."""


@hookimpl
def amb_register_transports(registry: TransportRegistry) -> None:
    registry.add("tiny", TinyTransport, distribution=DISTRIBUTION)


@hookimpl
def amb_register_routers(registry: RouterRegistry) -> None:
    """``bus.route(source, "tiny-triage")``: urgent work one way, the rest of the work another."""
    registry.add(
        "tiny-triage",
        [
            Rule(to="triage.urgent", when={"payload.priority": {"gte": 8}}),
            Rule(to="triage.normal", when={"payload.priority": {"exists": True}}),
        ],
    )


async def keep_dead_letter(dead: DeadLetter, bus: MessageBus) -> None:
    """Keep the letter by its message id. Idempotent, as every handler must be: when another
    handler fails, the message comes back and every handler gets the letter again. Raising here
    would mean "not stored"."""
    DEAD_LETTERS[dead.message.id] = dead
    while len(DEAD_LETTERS) > 1000:
        del DEAD_LETTERS[next(iter(DEAD_LETTERS))]


@hookimpl
def amb_register_dead_letter_handlers(registry: DeadLetterRegistry) -> None:
    registry.add(keep_dead_letter)


class Witness(Middleware):
    """Notes each message the bus sends and each handler call. One instance serves every bus of
    the process, so it keeps no per-bus state."""

    async def on_publish(self, message: Message, send: Send) -> None:
        SEEN.append(("publish", message.topic))
        await send(message)

    async def on_receive(self, message: Message, call: Call) -> Any:
        SEEN.append(("receive", message.topic))
        return await call(message)


@hookimpl
def amb_register_middleware(registry: MiddlewareRegistry) -> None:
    registry.add(Witness())
