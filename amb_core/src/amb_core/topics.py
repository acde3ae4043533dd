"""The one topic grammar every backend shares, and the matcher the core re-checks deliveries with.

A *topic* is dot-separated tokens, each of ``A-Z a-z 0-9 _ -`` (the characters every broker accepts:
Kafka's topic names are the narrowest), at most 249 characters in all (Kafka's limit). A *pattern* may
also use ``*`` for exactly one token and, as its last token only, ``>`` for one or more tokens: the
NATS grammar, so ``a.*`` matches ``a.b`` but never ``a.b.c``, and ``a.>`` matches both.

Brokers differ (Redis glob ``*`` crosses dots, SNS filters match prefixes), so transports may match
natively but broadly; the core re-checks every delivery with :func:`matches`, which is cached so the
re-check costs a dictionary lookup on the hot path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from .errors import InvalidTopicError

__all__ = [
    "MAX_TOPIC_LENGTH",
    "is_pattern",
    "literal_prefix",
    "matcher",
    "matches",
    "to_regex",
    "validate_pattern",
    "validate_topic",
]

MAX_TOPIC_LENGTH = 249
_TOKEN = re.compile(r"[A-Za-z0-9_\-]+\Z")
KNOWN_TOPICS: dict[str, None] = {}
"""Topics :func:`validate_topic` has found valid (up to a bound, then it starts over): a hot path may
test membership itself and call it only for the others."""
_CACHE_LIMIT = 65536


def _check(value: object, *, pattern: bool) -> str:
    kind = "pattern" if pattern else "topic"
    if not isinstance(value, str):
        raise InvalidTopicError(repr(value), f"a {kind} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidTopicError(value, f"a {kind} cannot be empty")
    if len(value) > MAX_TOPIC_LENGTH:
        raise InvalidTopicError(value, f"longer than {MAX_TOPIC_LENGTH} characters")
    tokens = value.split(".")
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        if not token:
            raise InvalidTopicError(value, "empty token (leading, trailing or double dot)")
        if token in ("*", ">"):
            if not pattern:
                raise InvalidTopicError(value, f"wildcard {token!r} is not allowed in a topic")
            if token == ">" and index != last:
                raise InvalidTopicError(value, "'>' may only be the last token")
            continue
        if not _TOKEN.match(token):
            raise InvalidTopicError(
                value,
                f"token {token!r} has characters outside A-Z a-z 0-9 _ - (and * > in patterns)",
            )
    return value


def validate_topic(topic: str, *, remember: bool = True) -> str:
    """Return ``topic`` if it is a valid concrete topic (no wildcards).

    Valid topics are remembered, so that publishing to one again costs a dictionary lookup;
    ``remember=False`` checks without remembering, for one-off topics (a request's reply inbox)
    that would only crowd the others out.

    :raises InvalidTopicError: when it is not (also for a value that is no str at all).
    """
    try:
        if topic in KNOWN_TOPICS:
            return topic
    except TypeError:  # unhashable (a list, say): _check says it is no str
        pass
    _check(topic, pattern=False)
    if remember:
        if len(KNOWN_TOPICS) >= _CACHE_LIMIT:
            KNOWN_TOPICS.clear()
        KNOWN_TOPICS[topic] = None
    return topic


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid subscription pattern.

    :raises InvalidTopicError: when it is not.
    """
    return _check(pattern, pattern=True)


def is_pattern(pattern: str) -> bool:
    """True when ``pattern`` has a wildcard token."""
    return any(token in ("*", ">") for token in pattern.split("."))


def to_regex(pattern: str) -> str:
    """The pattern as an anchored regular expression (for brokers that subscribe by regex)."""
    parts: list[str] = []
    for token in validate_pattern(pattern).split("."):
        if token == "*":
            parts.append(r"[^.]+")
        elif token == ">":
            parts.append(r"[^.]+(?:\.[^.]+)*")
        else:
            parts.append(re.escape(token))
    return "^" + r"\.".join(parts) + "$"


def literal_prefix(pattern: str) -> str:
    """The longest literal prefix of ``pattern`` (``a.b.*`` -> ``a.b.``), for prefix filters."""
    out: list[str] = []
    for token in validate_pattern(pattern).split("."):
        if token in ("*", ">"):
            return ".".join(out) + "."
        out.append(token)
    return pattern


@lru_cache(maxsize=4096)
def matcher(pattern: str) -> Callable[[str], bool]:
    """A cached predicate ``topic -> bool`` for ``pattern``; exact patterns compare by equality."""
    validate_pattern(pattern)
    if not is_pattern(pattern):
        return pattern.__eq__
    regex = re.compile(to_regex(pattern))
    seen: dict[str, bool] = {}

    def match(topic: str) -> bool:
        hit = seen.get(topic)
        if hit is None:
            if len(seen) >= _CACHE_LIMIT:
                seen.clear()
            hit = seen[topic] = regex.match(topic) is not None
        return hit

    return match


def matches(pattern: str, topic: str) -> bool:
    """True when ``topic`` falls under ``pattern`` in AMB's grammar."""
    return matcher(pattern)(topic)
