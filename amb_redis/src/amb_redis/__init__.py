"""AMB's Redis backend: Streams (durable, the default) and pub/sub (lowest latency).

``MessageBus(RedisBroker(url="redis://localhost:6379"))`` or ``MessageBus.from_url("redis://...")``.
"""

from __future__ import annotations

from .config import RedisConfig
from .errors import (
    RedisAuthenticationError,
    RedisConnectError,
    RedisError,
    RedisPublishError,
    RedisUnavailableError,
    RedisUnsupportedError,
)
from .transport import PUBSUB_CAPABILITIES, STREAMS_CAPABILITIES, RedisBroker, RedisTransport

__all__ = [
    "PUBSUB_CAPABILITIES",
    "STREAMS_CAPABILITIES",
    "RedisAuthenticationError",
    "RedisBroker",
    "RedisConfig",
    "RedisConnectError",
    "RedisError",
    "RedisPublishError",
    "RedisTransport",
    "RedisUnavailableError",
    "RedisUnsupportedError",
]
