"""Registers the NATS transport with AMB through the ``amb`` entry-point group."""

from __future__ import annotations

from amb_core.plugins import TransportRegistry, hookimpl

from .transport import NATSTransport


@hookimpl
def amb_register_transports(registry: TransportRegistry) -> None:
    registry.add("nats", NATSTransport, distribution="agent-message-bus-nats")
    registry.add("tls", NATSTransport, distribution="agent-message-bus-nats")
