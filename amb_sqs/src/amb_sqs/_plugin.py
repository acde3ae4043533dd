"""The ``amb`` entry point of agent-message-bus-sqs: registers the ``sqs://`` scheme."""

from __future__ import annotations

from amb_core.plugins import TransportRegistry, hookimpl

from .transport import SQSTransport


@hookimpl
def amb_register_transports(registry: TransportRegistry) -> None:
    registry.add("sqs", SQSTransport, distribution="agent-message-bus-sqs")
