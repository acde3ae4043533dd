"""Messages SQS's redrive policy moved aside, turned back into the bus's dead letters.

The bus retries and dead-letters failing messages itself after ``max_attempts``, so SQS's native
redrive (after ``max_attempts + redrive_margin`` receives) only catches messages whose consumers kept
dying before settling them: a handler that crashes its process, a poison message that exhausts
memory. Those land in the namespace's ``<namespace>-dlq`` queue, which nothing in AMB reads by
itself; :func:`sweep_redriven` takes them out and hands each to the bus's dead-letter handlers, so the
default handler publishes it to ``dlq.<topic>``, where dead-letter subscribers and ``amb dlq`` see it.
Run it at startup, or periodically from one process.
"""

from __future__ import annotations

from amb_core.bus import MessageBus
from amb_core.deadletter import DeadLetter
from amb_core.errors import ConfigurationError

from .transport import SQSTransport

__all__ = ["REDRIVE_SUBSCRIPTION", "sweep_redriven"]

REDRIVE_SUBSCRIPTION = "sqs-redrive"


async def sweep_redriven(bus: MessageBus, *, idle: float = 1.0) -> int:
    """Dead-letter every message in the namespace's native DLQ queue; returns how many.

    :raises ConfigurationError: when the bus does not run on an :class:`SQSTransport`.
    """
    transport = bus.transport
    if not isinstance(transport, SQSTransport):
        raise ConfigurationError("sweep_redriven needs a bus over the SQS transport")
    moved = await transport.sweep_dead_letters(idle)
    for message in moved:
        dead = DeadLetter(
            message,
            "max_attempts",
            "moved to the DLQ queue by SQS's redrive policy: its consumers never settled it",
            max(message.attempt, 1),
            REDRIVE_SUBSCRIPTION,
        )
        await bus._dead_letter(dead)
    return len(moved)
