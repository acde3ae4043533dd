"""How AMB's names map onto SNS and SQS names, and patterns onto SNS filter policies.

- One SNS topic per namespace: ``<namespace>`` (``<namespace>.fifo`` in FIFO mode).
- A consumer group's queue: ``<namespace>-g-<group>-<hash>``, the hash covering the full group name
  and pattern, so ``(pattern, group)`` names one queue (as on every AMB backend) within SQS's
  80-character limit.
- A fan-out subscriber's queue: ``<namespace>-f-<random>``, deleted when it unsubscribes.
- The native dead-letter queue: ``<namespace>-dlq``, shared by the namespace's queues.
- The dead-letter archive: ``<namespace>-dlq-archive``, subscribed to every ``dlq.*`` topic, read by
  ``bus.dead_letters`` (list and replay).
- Filter policy on the ``amb-topic`` attribute: a literal pattern filters exactly, a wildcard one by
  its literal prefix (``a.b.*`` -> prefix ``a.b.``), and one starting with a wildcard by existence;
  the bus re-checks AMB's grammar on every delivery (a prefix filter lets ``a.b.c.d`` through).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

from amb_core.topics import is_pattern, literal_prefix
from amb_core.wire import H_TOPIC

__all__ = [
    "archive_queue_name",
    "dlq_queue_name",
    "fallback_topic",
    "fanout_queue_name",
    "filter_policy",
    "group_queue_name",
    "topic_name",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _suffix(fifo: bool) -> str:
    return ".fifo" if fifo else ""


def topic_name(namespace: str, fifo: bool) -> str:
    return namespace + _suffix(fifo)


def group_queue_name(namespace: str, group: str, pattern: str, fifo: bool) -> str:
    digest = hashlib.sha256(f"{group}\0{pattern}".encode()).hexdigest()[:12]
    readable = _UNSAFE.sub("_", group)[: 80 - len(namespace) - 4 - 13 - 5]
    return f"{namespace}-g-{readable}-{digest}{_suffix(fifo)}"


def fanout_queue_name(namespace: str, fifo: bool) -> str:
    return f"{namespace}-f-{uuid.uuid4().hex[:16]}{_suffix(fifo)}"


def dlq_queue_name(namespace: str, fifo: bool) -> str:
    return f"{namespace}-dlq{_suffix(fifo)}"


def archive_queue_name(namespace: str, fifo: bool) -> str:
    return f"{namespace}-dlq-archive{_suffix(fifo)}"


def filter_policy(pattern: str) -> str:
    """The SNS ``FilterPolicy`` (JSON) that lets through at least every topic ``pattern`` matches."""
    if not is_pattern(pattern):
        rule: list[object] = [pattern]
    else:
        prefix = literal_prefix(pattern)
        rule = [{"exists": True}] if prefix == "." else [{"prefix": prefix}]
    return json.dumps({H_TOPIC: rule})


def fallback_topic(pattern: str) -> str:
    """The topic given to a message that names none (sent straight to a queue by another program):
    the pattern itself when literal, else the pattern with each wildcard read as ``foreign``."""
    return ".".join("foreign" if t in ("*", ">") else t for t in pattern.split("."))
