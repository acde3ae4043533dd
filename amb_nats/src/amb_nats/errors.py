"""NATS errors, as subclasses of AMB's categories, and the one place driver exceptions are translated.

``except amb_core.errors.TransportError`` catches them alike with every other backend's;
``except NATSError`` narrows to this backend. No nats-py exception escapes the transport raw.
"""

from __future__ import annotations

import asyncio
import functools

from amb_core.auth import AuthSignals
from amb_core.errors import (
    AuthenticationError,
    BrokerUnavailableError,
    ConnectError,
    NotConnectedError,
    PublishError,
    TransportError,
)

__all__ = [
    "NATSAuthenticationError",
    "NATSBrokerUnavailableError",
    "NATSConnectError",
    "NATSError",
    "NATSPublishError",
    "is_auth_error",
    "translate_publish_error",
]


class NATSError(TransportError):
    """Any failure of the NATS server or of the connection to it."""


class NATSConnectError(NATSError, ConnectError):
    """The NATS server could not be reached in time."""


class NATSAuthenticationError(NATSConnectError, AuthenticationError):
    """The NATS server refused the credentials (token, user/password)."""


class NATSPublishError(NATSError, PublishError):
    """The NATS server (or JetStream) did not take a message."""


class NATSBrokerUnavailableError(NATSPublishError, BrokerUnavailableError):
    """The connection is down (nats-py is reconnecting): the message was not sent, at once or after
    the ``publish_timeout`` wait for the connection to come back."""


@functools.cache
def _auth_signals() -> AuthSignals:
    import nats.errors

    return AuthSignals(
        types=(nats.errors.AuthorizationError,), phrases=("authorization", "authentication")
    )


def is_auth_error(exc: BaseException) -> bool:
    """True for the server's 'Authorization Violation' / 'Authentication' errors."""
    return _auth_signals().matches(exc)


def translate_publish_error(
    exc: Exception, subject: str, where: str, *, connection_lost: bool = False
) -> TransportError:
    """A typed AMB error for a failed publish; the subject is named, never the URL.

    :param connection_lost: the connection went down after the message was sent (or is down
        now). A JetStream acknowledgement that then does not come is the outage's doing, not the
        server's answer: :class:`NATSBrokerUnavailableError`, like a publish refused during the
        outage, so that ``except BrokerUnavailableError`` (retry later) sees every publish the
        outage failed. The message may have been stored; a retry with the same message id is
        stored once (``Nats-Msg-Id``).
    """
    import nats.errors

    if isinstance(exc, (nats.errors.ConnectionClosedError,)):
        return NotConnectedError(f"{where}: the NATS connection is closed")
    if connection_lost and isinstance(exc, (asyncio.TimeoutError, nats.errors.TimeoutError)):
        return NATSBrokerUnavailableError(
            f"{where}: the connection to the NATS server was lost before JetStream acknowledged "
            f"the message for {subject!r}; it may or may not be stored (publishing it again "
            "stores it once)"
        )
    if isinstance(exc, nats.errors.OutboundBufferLimitError):  # nats-py's: only while disconnected
        return NATSBrokerUnavailableError(
            f"{where}: the connection is down (reconnecting); the message for {subject!r} "
            "was not sent"
        )
    if isinstance(exc, (asyncio.TimeoutError, nats.errors.TimeoutError)):
        return NATSPublishError(f"{where}: no acknowledgement for {subject!r} in time")
    return NATSPublishError(
        f"{where}: publishing to {subject!r} failed: {type(exc).__name__}: {exc}"
    )
