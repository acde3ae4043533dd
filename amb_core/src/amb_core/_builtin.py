"""The built-in plugin: registers the in-memory transport and the default dead-letter handler
through the same hooks a third-party plugin uses."""

from __future__ import annotations

from .deadletter import publish_to_dlq
from .memory import MemoryTransport
from .plugins import DeadLetterRegistry, TransportRegistry, hookimpl


@hookimpl
def amb_register_transports(registry: TransportRegistry) -> None:
    registry.add("memory", MemoryTransport, distribution="agent-message-bus")


@hookimpl
def amb_register_dead_letter_handlers(registry: DeadLetterRegistry) -> None:
    registry.add(publish_to_dlq)
