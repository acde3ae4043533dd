"""Every error AMB raises, in one tree.

Callers catch by *category*; backends subclass a category so that ``except TransportError`` catches a
Redis failure and a Kafka failure alike, while ``except RedisError`` (in ``amb_redis.errors``) narrows to
one backend. Driver exceptions never escape raw: backends translate them at the edge.

::

    AMBError
    ├── ConfigurationError (ValueError)       bad arguments, detected at the call
    │   ├── InvalidTopicError                 a topic or pattern outside the grammar
    │   ├── UnknownSchemeError                no installed transport serves a URL scheme
    │   ├── UnknownOptionError                a URL or keyword option the backend does not know
    │   ├── InvalidOptionError                an option's value of the wrong type or range
    │   └── UnsupportedEventLoopError         the transport cannot run on this event loop
    ├── UnsupportedError                      the transport lacks a capability the call needs
    ├── PluginError                           a plugin misbehaved while registering
    ├── TransportError                        the broker or the connection to it failed
    │   ├── ConnectError                      cannot reach the broker at connect
    │   │   └── AuthenticationError           the broker refused the credentials
    │   ├── PublishError                      the broker did not take a message
    │   │   ├── MessageTooLargeError          the message exceeds the broker's size limit
    │   │   └── BrokerUnavailableError        the connection is down (reconnecting)
    │   └── NotConnectedError                 used before connect() or after close()
    ├── DecodeError                           bytes that are not a readable AMB envelope
    ├── RequestError                          request/reply failed
    │   ├── RequestTimeoutError (TimeoutError) no reply within the timeout
    │   ├── NoRespondersError                 the broker knows nobody listens (NATS)
    │   └── RemoteHandlerError                the responder's handler failed for good
    └── ReplyError                            reply() on a message that asked for none
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "AMBError",
    "AuthenticationError",
    "BrokerUnavailableError",
    "ConfigurationError",
    "ConnectError",
    "DecodeError",
    "InvalidOptionError",
    "InvalidTopicError",
    "MessageTooLargeError",
    "NoRespondersError",
    "NotConnectedError",
    "PayloadValidationError",
    "PluginError",
    "PublishError",
    "RejectMessage",
    "RemoteHandlerError",
    "ReplyError",
    "RequestError",
    "RequestTimeoutError",
    "StreamGapError",
    "StreamIdleError",
    "TransportError",
    "UnknownOptionError",
    "UnknownSchemeError",
    "UnsupportedError",
    "UnsupportedEventLoopError",
]


class AMBError(Exception):
    """Base of every error raised by AMB and its backends."""


class ConfigurationError(AMBError, ValueError):
    """An argument is wrong; raised at the call, before anything is sent."""


class InvalidTopicError(ConfigurationError):
    """A topic or pattern is outside AMB's grammar (see :mod:`amb_core.topics`)."""

    def __init__(self, value: str, reason: str) -> None:
        super().__init__(f"invalid topic {value!r}: {reason}")
        self.value = value
        self.reason = reason


class UnknownSchemeError(ConfigurationError):
    """No installed transport registered this URL scheme."""

    def __init__(self, scheme: str, hint: str | None, known: list[str]) -> None:
        message = f"no transport for URL scheme {scheme!r}"
        if hint:
            message += f"; install it with: pip install 'agent-message-bus[{hint}]'"
        message += f" (installed schemes: {', '.join(sorted(known)) or 'none'})"
        super().__init__(message)
        self.scheme = scheme


class UnknownOptionError(ConfigurationError):
    """An option a backend does not know: a typo, or an option of another backend."""

    def __init__(self, backend: str, names: Iterable[str], known: Iterable[str]) -> None:
        self.names = sorted(names)
        listed = ", ".join(repr(n) for n in self.names)
        super().__init__(
            f"unknown {backend} option{'s' if len(self.names) > 1 else ''} {listed} "
            f"(known: {', '.join(sorted(known))})"
        )


class InvalidOptionError(ConfigurationError):
    """An option's value is not of its declared type, or outside its range or choices."""

    def __init__(self, backend: str, name: str, value: Any, expected: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"{backend} option {name}={value!r} is not {expected}")


class UnsupportedEventLoopError(ConfigurationError):
    """The transport's driver cannot run on the current event loop (e.g. redis-py under trio)."""


class UnsupportedError(AMBError):
    """The transport does not declare a capability that the call needs."""


class PluginError(AMBError):
    """A plugin registered something invalid (a duplicate scheme, a non-callable factory...)."""


class TransportError(AMBError):
    """The broker, or the connection to it, failed. Backends subclass this."""


class ConnectError(TransportError):
    """The broker could not be reached at connect (refused, DNS, TLS, timeout)."""


class AuthenticationError(ConnectError):
    """The broker refused the credentials."""


class PublishError(TransportError):
    """The broker did not accept a message; it was not sent."""


class MessageTooLargeError(PublishError):
    """The encoded message exceeds what the broker accepts."""

    def __init__(self, size: int, limit: int, topic: str) -> None:
        super().__init__(f"message for {topic!r} is {size} bytes; the broker accepts {limit}")
        self.size = size
        self.limit = limit
        self.topic = topic


class BrokerUnavailableError(PublishError):
    """The connection to the broker is down (the transport is reconnecting), so a message could
    not be handed over: raised at once or after the bounded wait the transport documents. The
    message was not sent; publishing again once :attr:`Transport.state` is ``CONNECTED`` is safe."""


class NotConnectedError(TransportError):
    """The bus or transport was used before ``connect()`` or after ``aclose()``."""


class DecodeError(AMBError):
    """Bytes that are not a readable AMB envelope (bad JSON, bad header values)."""


class RequestError(AMBError):
    """A request did not get a usable reply."""


class RequestTimeoutError(RequestError, TimeoutError):
    """No reply arrived within the timeout. Also a builtin ``TimeoutError``."""

    def __init__(self, topic: str, timeout: float) -> None:
        super().__init__(f"no reply to request on {topic!r} within {timeout:g}s")
        self.topic = topic
        self.timeout = timeout


class StreamIdleError(RequestTimeoutError):
    """A streamed reply went quiet: no chunk within ``idle_timeout``. Also a ``TimeoutError``."""

    def __init__(self, topic: str, idle_timeout: float) -> None:
        RequestError.__init__(self, f"no chunk of the stream on {topic!r} for {idle_timeout:g}s")
        self.topic = topic
        self.timeout = idle_timeout


class StreamGapError(RequestError):
    """A streamed reply lost a chunk: a later one arrived, and the missing one did not follow
    within the gap bound (the broker dropped it)."""

    def __init__(self, topic: str, missing: int, waited: float) -> None:
        super().__init__(
            f"chunk {missing} of the stream on {topic!r} is missing: later chunks arrived and it "
            f"did not within {waited:g}s"
        )
        self.topic = topic
        self.missing = missing


class NoRespondersError(RequestError):
    """The broker reports that no subscriber listens on the request's topic."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"no responders on {topic!r}")
        self.topic = topic


class RemoteHandlerError(RequestError):
    """The responder's handler failed for good (its message was dead-lettered)."""

    def __init__(self, topic: str, reason: str, error: str) -> None:
        super().__init__(f"request on {topic!r} failed remotely ({reason}): {error}")
        self.topic = topic
        self.reason = reason
        self.error = error


class ReplyError(AMBError):
    """``reply()`` was called for a message that carries no ``reply_to``."""


class PayloadValidationError(AMBError, ValueError):
    """A payload is not what its handler's signature (or ``response_type``) declares."""

    def __init__(self, topic: str, type_name: str, errors: str) -> None:
        super().__init__(f"payload on {topic!r} is not a valid {type_name}: {errors}")
        self.topic = topic
        self.type_name = type_name
        self.errors = errors


class RejectMessage(Exception):
    """Raise from a handler to dead-letter the message at once, without retries.

    The reason recorded is ``rejected`` and the text of this exception becomes the error.
    """
