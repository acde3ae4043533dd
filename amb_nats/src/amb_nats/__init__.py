"""AMB's NATS backend: core NATS (at-most-once, lowest latency) and JetStream (durable).

``MessageBus.from_url("nats://host:4222")`` or ``...?mode=jetstream``; ``NATSBroker`` is the seed's
name for :class:`NATSTransport`.
"""

from __future__ import annotations

from .config import NATSConfig, parse_url
from .errors import (
    NATSAuthenticationError,
    NATSBrokerUnavailableError,
    NATSConnectError,
    NATSError,
    NATSPublishError,
)
from .transport import NATSBroker, NATSTransport

__all__ = [
    "NATSAuthenticationError",
    "NATSBroker",
    "NATSBrokerUnavailableError",
    "NATSConfig",
    "NATSConnectError",
    "NATSError",
    "NATSPublishError",
    "NATSTransport",
    "parse_url",
]
