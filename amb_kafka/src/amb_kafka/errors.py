"""Kafka errors: each inherits from a core category *and* :class:`KafkaError`.

``except amb_core.errors.ConnectError`` catches a Kafka connect failure like any other backend's;
``except amb_kafka.errors.KafkaError`` narrows to this backend. librdkafka's exceptions never escape
raw: :func:`translate` maps them at the edge, with credentials already absent from their text.
"""

from __future__ import annotations

from confluent_kafka import KafkaError as _LibError

from amb_core.auth import AuthSignals
from amb_core.errors import (
    AuthenticationError,
    BrokerUnavailableError,
    ConnectError,
    MessageTooLargeError,
    PublishError,
    TransportError,
)

__all__ = [
    "KafkaAuthenticationError",
    "KafkaConnectError",
    "KafkaError",
    "KafkaPublishError",
    "KafkaTransportError",
    "KafkaUnavailableError",
    "MessageTooLargeError",
    "is_auth_error",
]


def _code(error: object) -> object:
    """The librdkafka code of a ``KafkaError`` value (``None`` for anything else)."""
    code = getattr(error, "code", None)
    return code() if callable(code) else None


_AUTH = AuthSignals(
    codes=frozenset(
        {
            _LibError._AUTHENTICATION,
            _LibError.SASL_AUTHENTICATION_FAILED,
            _LibError.TOPIC_AUTHORIZATION_FAILED,
            _LibError.CLUSTER_AUTHORIZATION_FAILED,
        }
    ),
    code_of=_code,
)


def is_auth_error(error: object) -> bool:
    """True for librdkafka's refusals of the credentials (a ``KafkaError`` value, as an error
    callback or a ``KafkaException`` carries it)."""
    return _AUTH.matches(error)


class KafkaError(TransportError):
    """Base of every Kafka backend error."""


class KafkaTransportError(KafkaError):
    """The broker failed in a way that is neither a connect nor a publish failure."""


class KafkaConnectError(KafkaError, ConnectError):
    """The broker could not be reached within the connect timeout."""


class KafkaAuthenticationError(KafkaConnectError, AuthenticationError):
    """The broker refused the SASL credentials."""


class KafkaPublishError(KafkaError, PublishError):
    """The broker did not take a message (its delivery report carried an error)."""


class KafkaUnavailableError(KafkaPublishError, BrokerUnavailableError):
    """The broker did not confirm a message within ``publish_timeout`` because it could not be
    reached (down, restarting): the message may or may not have been stored."""
