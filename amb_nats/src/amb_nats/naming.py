"""How AMB topics map onto JetStream subjects, streams and consumers.

**Subjects.** In JetStream mode AMB keeps to a subject space of its own: topic ``orders.created``
travels on subject ``<stream_prefix>.orders.created`` (``AMB.orders.created`` by default). Streams
capture only that space, so they never store, nor answer with a PubAck, the core NATS traffic of
other applications (or of a core-mode bus) that happens to use the same first tokens. A non-AMB
producer whose messages JetStream-mode subscribers should get publishes to the prefixed subject.
Reply inboxes (``_INBOX.*``) stay unprefixed core NATS subjects in both modes.

**Streams.** One stream per *namespace*: the first token of a topic (``orders.eu.created`` ->
``orders``), except under ``dlq`` where it is the first two (``dlq.orders.eu.created`` ->
``dlq.orders``) so that each application's dead letters live beside, not inside, one another's. The
stream is called ``<stream_prefix>_<namespace with '.' as '__'>`` (``AMB_orders``,
``AMB_dlq__orders``) and captures ``<stream_prefix>.<namespace>`` and
``<stream_prefix>.<namespace>.>``. Streams never overlap, so JetStream accepts them all.

A pattern must therefore name its namespace: ``orders.*.created`` is fine, ``*.created`` or ``>``
cannot be bound to one stream and is refused in JetStream mode (core NATS mode takes any pattern).

Durable consumers (consumer groups) are named ``<group>_<8 hex of the pattern's hash>``, so that one
group name used with two patterns gives two consumers instead of a clash.
"""

from __future__ import annotations

import hashlib
import re

from amb_core.errors import UnsupportedError

__all__ = [
    "INBOX_PREFIX",
    "consumer_name",
    "namespace_of",
    "stream_name",
    "stream_subjects",
    "subject_of",
]

INBOX_PREFIX = "_INBOX"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def namespace_of(subject: str) -> str:
    """The namespace of a topic or pattern.

    :raises UnsupportedError: for a pattern whose namespace tokens are wildcards.
    """
    tokens = subject.split(".", 2)
    size = 2 if tokens[0] == "dlq" and len(tokens) > 1 else 1
    head = tokens[:size]
    if any(token in ("*", ">") for token in head):
        raise UnsupportedError(
            f"pattern {subject!r} spans several JetStream streams; in JetStream mode a pattern "
            "must start with a concrete namespace token (and 'dlq.' with two)"
        )
    return ".".join(head)


def subject_of(prefix: str, topic: str) -> str:
    """The JetStream subject of a topic or pattern: ``AMB.orders.created``."""
    return f"{prefix}.{topic}"


def stream_name(prefix: str, namespace: str) -> str:
    """``AMB_orders`` for namespace ``orders``; ``AMB_dlq__orders`` for ``dlq.orders``."""
    return f"{prefix}_{namespace.replace('.', '__')}"


def stream_subjects(prefix: str, namespace: str) -> list[str]:
    """What the namespace's stream captures: its own prefixed subjects and nothing else."""
    return [f"{prefix}.{namespace}", f"{prefix}.{namespace}.>"]


def consumer_name(group: str, pattern: str) -> str:
    """A durable name that is valid for JetStream and unique per (group, pattern)."""
    digest = hashlib.sha1(pattern.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{_UNSAFE.sub('_', group)}_{digest}"
