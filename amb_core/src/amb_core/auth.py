"""Telling an authentication failure from any other failure to connect.

A refused password must not be retried like a broker that is down: the bus and the user need an
:class:`~amb_core.errors.AuthenticationError` at once, whatever the backend. Each driver says "wrong
credentials" in its own way (an exception class, an error code, a phrase in a message), so each
backend declares those once as an :class:`AuthSignals` and asks :meth:`AuthSignals.matches`, instead
of writing its own test of class names and substrings::

    REDIS_AUTH = AuthSignals(types=(redis.exceptions.AuthenticationError,), phrases=("WRONGPASS",))
    if REDIS_AUTH.matches(exc):
        raise RedisAuthenticationError(...) from None
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .errors import AuthenticationError

__all__ = ["AuthSignals"]


def _no_code(exc: object) -> object:
    return None


@attrs.frozen
class AuthSignals:
    """What marks a driver's exception as a refusal of the credentials.

    :param types: exception classes that always mean it (checked with ``isinstance``).
    :param phrases: text found in the exception's message (case-insensitive) that means it.
    :param codes: error codes that mean it, read from the exception by ``code_of``.
    :param code_of: how to read an exception's error code (an AWS ``Error.Code``, a librdkafka
        ``KafkaError.code()``); returns ``None`` for an exception without one.
    :param phrase_types: when given, phrases count only on exceptions of these classes, so that a
        message that happens to mention "auth" in another failure is not taken for a refusal.
    """

    types: tuple[type[BaseException], ...] = ()
    phrases: tuple[str, ...] = ()
    codes: frozenset[object] = frozenset()
    code_of: Callable[[object], object] = _no_code
    phrase_types: tuple[type[BaseException], ...] | None = None

    def matches(self, exc: object) -> bool:
        """True when ``exc`` says the broker refused the credentials; an
        :class:`~amb_core.errors.AuthenticationError` already typed by AMB always does.

        ``exc`` is usually an exception, but may be any error object a driver reports (librdkafka
        hands ``KafkaError`` values to a callback), hence ``object``."""
        if isinstance(exc, AuthenticationError) or (self.types and isinstance(exc, self.types)):
            return True
        if self.codes and self.code_of(exc) in self.codes:
            return True
        if not self.phrases or (
            self.phrase_types is not None and not isinstance(exc, self.phrase_types)
        ):
            return False
        text = str(exc).lower()
        return any(phrase.lower() in text for phrase in self.phrases)
