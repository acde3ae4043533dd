"""Registers the ``kafka://`` scheme through the ``amb`` entry-point group."""

from __future__ import annotations

from amb_core.plugins import TransportRegistry, hookimpl

from .transport import KafkaTransport


@hookimpl
def amb_register_transports(registry: TransportRegistry) -> None:
    registry.add("kafka", KafkaTransport, distribution="agent-message-bus-kafka")
