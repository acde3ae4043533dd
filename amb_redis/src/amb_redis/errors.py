"""The Redis backend's errors, and the one place where redis-py exceptions are translated.

Each class inherits from :class:`RedisError` (catch every Redis failure) *and* from the core category
(catch a failure of any backend alike), as taskiq-redis and httpx do::

    RedisError (amb_core.errors.TransportError)
    ├── RedisConnectError (ConnectError)          refused, DNS, TLS, timeout at connect
    │   └── RedisAuthenticationError (AuthenticationError)   bad user or password
    └── RedisPublishError (PublishError)          Redis did not take a message within the bound
        └── RedisUnavailableError (BrokerUnavailableError)   Redis unreachable for publish_timeout
    RedisUnsupportedError (UnsupportedError)      what a Redis Cluster cannot do (wildcard pub/sub)

Driver exceptions never escape raw, and no message carries a password: :func:`translate` scrubs it.
"""

from __future__ import annotations

import asyncio
import functools

from amb_core.auth import AuthSignals
from amb_core.errors import (
    AuthenticationError,
    BrokerUnavailableError,
    ConnectError,
    PublishError,
    TransportError,
    UnsupportedError,
)

__all__ = [
    "RedisAuthenticationError",
    "RedisConnectError",
    "RedisError",
    "RedisPublishError",
    "RedisUnavailableError",
    "RedisUnsupportedError",
    "is_auth_error",
    "is_connection_error",
]


class RedisError(TransportError):
    """Redis, or the connection to it, failed."""


class RedisConnectError(RedisError, ConnectError):
    """Redis could not be reached at connect (refused, DNS, TLS, timeout)."""


class RedisAuthenticationError(RedisConnectError, AuthenticationError):
    """Redis refused the user name or password."""


class RedisPublishError(RedisError, PublishError):
    """Redis did not take a message (after retrying within ``publish_timeout``)."""


class RedisUnavailableError(RedisPublishError, BrokerUnavailableError):
    """Redis stayed unreachable for ``publish_timeout``: the publish was given up (a retried XADD
    whose reply was lost with the connection may have been stored all the same)."""


class RedisUnsupportedError(RedisError, UnsupportedError):
    """This deployment cannot do what was asked: a wildcard subscription in pub/sub mode on a
    Redis Cluster (sharded pub/sub has no patterns; see docs/backends/redis.md)."""


_AUTH_MARKERS = ("WRONGPASS", "NOAUTH", "invalid password", "invalid username-password", "AUTH <")


@functools.cache
def _auth_signals() -> AuthSignals:
    import redis.exceptions as rex

    return AuthSignals(
        types=(rex.AuthenticationError, rex.AuthenticationWrongNumberOfArgsError),
        phrases=_AUTH_MARKERS,
        phrase_types=(rex.ResponseError,),  # a server reply, not any text that mentions AUTH
    )


def is_auth_error(exc: BaseException) -> bool:
    """True for redis-py's authentication failures, whatever class it chose for them."""
    return _auth_signals().matches(exc)


def is_connection_error(exc: BaseException) -> bool:
    """True for failures that a reconnect may cure (socket errors, timeouts, a restarting server)."""
    import redis.exceptions as rex

    if isinstance(
        exc, (rex.ConnectionError, rex.TimeoutError, OSError, TimeoutError, asyncio.TimeoutError)
    ):
        return True
    text = str(exc)
    if isinstance(exc, rex.ClusterError | rex.SlotNotCoveredError):  # failover under way
        return True
    if isinstance(exc, rex.RedisClusterException) and "connect" in text:  # no node answers yet
        return True
    return isinstance(exc, rex.ResponseError) and text.startswith(
        ("LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK")
    )
