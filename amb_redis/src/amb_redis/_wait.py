"""``WAIT`` after publishes: a write is acknowledged only once replicas have it.

Redis replicates asynchronously: a master answers an XADD before any replica has it, so when the
master dies the replica promoted in its place may lack the newest entries, and a publish that
returned is lost (docs/scaling.md measures it). ``wait_replicas=N`` closes that window: each
pipeline of writes ends with ``WAIT N timeout`` on every node it wrote to, sent on the same
connection (WAIT counts the writes of its own connection), and a write whose node reports fewer
than ``N`` replicas fails with :class:`~amb_redis.errors.RedisPublishError` instead of returning.
WAIT does not make Redis strongly consistent (a failover may still pick a replica that lags), but
the replica that has the write is the one the cluster promotes unless two nodes fail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from .errors import RedisPublishError

__all__ = ["WRITES", "Wait", "plan_waits"]

WRITES = frozenset({"XADD", "SADD"})
"""The commands a WAIT must cover (pub/sub publishes are not stored: nothing to wait for)."""

Plan = list[tuple[Any, list[int]]]  # (node or None for the only node, indices of its writes)


def plan_waits(commands: Sequence[tuple[Any, ...]], node_of: Callable[[Any], Any] | None) -> Plan:
    """One WAIT per node written to: ``[(node, [index of each write on it])]``; a single Redis
    (``node_of`` None) gets one WAIT for all."""
    groups: dict[Any, tuple[Any, list[int]]] = {}
    for index, args in enumerate(commands):
        if args[0] not in WRITES:
            continue
        node = None if node_of is None else node_of(args[1])
        name = None if node is None else node.name
        groups.setdefault(name, (node, []))[1].append(index)
    return list(groups.values())


@attrs.frozen
class Wait:
    """How many replicas must acknowledge a write, and for how long a publish waits for them."""

    replicas: int
    timeout_ms: int

    def check(
        self, plan: Plan, acked: Sequence[Any], replies: list[Any], scrub: Callable[[str], str]
    ) -> None:
        """Replace the reply of each write whose node's WAIT fell short by a RedisPublishError."""
        for (_, indices), count in zip(plan, acked, strict=True):
            if isinstance(count, Exception):
                error = RedisPublishError(scrub(f"WAIT failed: {count}"))
            elif int(count) < self.replicas:
                error = RedisPublishError(
                    f"only {count} of {self.replicas} replicas acknowledged the write within "
                    f"{self.timeout_ms} ms (it may be stored; it may be lost at a failover)"
                )
            else:
                continue
            for index in indices:
                if not isinstance(replies[index], Exception):
                    replies[index] = error
