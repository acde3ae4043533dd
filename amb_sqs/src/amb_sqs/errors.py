"""SQS/SNS errors, and the one place where botocore exceptions become AMB's typed errors.

Callers catch AMB's categories (``ConnectError``, ``AuthenticationError``, ``PublishError``...);
``except SQSError`` narrows to this backend. Driver exceptions never escape raw, and no message built
here contains a credential: botocore's texts name the access key id at most, never the secret.
"""

from __future__ import annotations

from amb_core.auth import AuthSignals
from amb_core.errors import (
    AMBError,
    AuthenticationError,
    BrokerUnavailableError,
    ConfigurationError,
    ConnectError,
    PublishError,
    TransportError,
)

__all__ = [
    "NOT_FOUND",
    "SQSAuthenticationError",
    "SQSConnectError",
    "SQSError",
    "SQSPublishError",
    "SQSUnavailableError",
    "translate",
]

AUTH_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
        "IncompleteSignature",
        "InvalidSecurity",
    }
)


NOT_FOUND = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
"""The error codes of a queue that does not exist."""


class SQSError(TransportError):
    """Base of the SQS backend's errors."""


class SQSConnectError(SQSError, ConnectError):
    """The SQS or SNS endpoint could not be reached."""


class SQSAuthenticationError(SQSConnectError, AuthenticationError):
    """AWS refused the credentials (or none could be found in the standard chain)."""


class SQSPublishError(SQSError, PublishError):
    """SNS did not take a message."""


class SQSUnavailableError(SQSConnectError, BrokerUnavailableError):
    """A publish could not reach SNS (refused, reset or timed out after botocore's retries): the
    message was not sent. Also an ``SQSConnectError``, as such failures were before."""


def error_code(exc: object) -> str:
    """The AWS error code of a botocore ``ClientError`` (``""`` for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


_AUTH = AuthSignals(codes=AUTH_CODES, code_of=error_code)


def translate(exc: BaseException, action: str, where: str, *, publishing: bool = False) -> AMBError:
    """A typed AMB error for a driver exception raised while doing ``action`` against ``where``
    (a redacted description)."""
    from botocore import exceptions as be

    text = f"{action} on {where} failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, AMBError):
        return exc
    if isinstance(exc, (be.NoCredentialsError, be.PartialCredentialsError)):
        return SQSAuthenticationError(f"{text} (credentials come from the standard AWS chain)")
    if isinstance(exc, be.NoRegionError):
        return ConfigurationError(f"{text} (give ?region= in the URL or set AWS_DEFAULT_REGION)")
    if _AUTH.matches(exc):
        return SQSAuthenticationError(text)
    if isinstance(
        exc,
        (
            be.EndpointConnectionError,
            be.ConnectTimeoutError,
            be.ConnectionClosedError,
            be.ReadTimeoutError,
            OSError,
            TimeoutError,
        ),
    ):
        return SQSUnavailableError(text) if publishing else SQSConnectError(text)
    if publishing:
        return SQSPublishError(text)
    return SQSError(text)
