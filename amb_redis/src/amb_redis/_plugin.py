"""Registers the Redis transport with AMB (entry point ``amb = amb_redis._plugin``)."""

from __future__ import annotations

from amb_core.plugins import TransportRegistry, hookimpl

from .transport import RedisTransport


@hookimpl
def amb_register_transports(registry: TransportRegistry) -> None:
    for scheme in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
        registry.add(scheme, RedisTransport, distribution="agent-message-bus-redis")
