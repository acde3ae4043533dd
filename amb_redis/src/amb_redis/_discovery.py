"""Which streams a wildcard subscription reads: AMB's topic registry, and a SCAN for the rest.

Two sources, because each misses what the other finds:

- The registry ``<namespace>::topics``: every AMB publisher SADDs a topic before its first XADD.
  Each tick costs one ``SCARD`` (and one ``SMEMBERS`` when the count changed), whatever the size of
  the database, so AMB's own new topics are found within one tick.
- ``SCAN``: a stream another program created (``XADD amb:orders.created * body ...``) is in no
  registry. Each tick runs ONE step, ``SCAN <cursor> MATCH <namespace>:<glob> COUNT <scan> TYPE
  stream``, continuing from where the previous step stopped. Redis visits about ``scan`` keys per
  step (MATCH and TYPE filter after the visit), so a step's cost is bounded whatever the size of
  the database, and a full pass over the database takes about ``DBSIZE / scan`` ticks: a stream
  another program created is found within ``ceil(DBSIZE / scan) * discover`` seconds (one tick up
  to ``scan`` keys). SCAN guarantees that a key present for a whole pass is returned in that pass.

A tick runs every ``discover`` seconds per wildcard subscription; ``scan=0`` turns the SCAN off.

On a Redis Cluster each master holds its own keys, so each tick runs one SCAN step on every master,
each with its own cursor (a master that appears after a failover starts from cursor 0).
"""

from __future__ import annotations

from typing import Any

from amb_core.errors import InvalidTopicError
from amb_core.topics import matcher, validate_topic

from ._cluster import primaries
from .config import RedisConfig

__all__ = ["Discovery"]


class Discovery:
    """The streams matching one wildcard pattern, found a bounded step at a time.

    :param client: a ``redis.asyncio.Redis``.
    :param config: the transport's configuration (namespace, ``scan``).
    :param pattern: the subscription's AMB pattern (re-checked: Redis's glob ``*`` crosses dots).
    """

    def __init__(self, client: Any, config: RedisConfig, pattern: str) -> None:
        self._client = client
        self._config = config
        self._match = matcher(pattern)
        self._glob = config.glob(pattern)
        self._registry_count = -1
        self._cursor = 0
        self._cursors: dict[str, int] = {}  # a cluster's master -> its SCAN cursor

    async def step(self) -> set[str]:
        """The matching topics this tick found (the caller skips those it already reads)."""
        found: set[str] = set()
        registry = self._config.registry
        count = await self._client.scard(registry)
        if count != self._registry_count:
            for raw in await self._client.smembers(registry):
                topic = _topic_of(raw)
                if topic is not None and self._match(topic):
                    found.add(topic)
            self._registry_count = count
        if self._config.scan > 0:
            keys = await (self._scan_masters() if self._config.cluster else self._scan())
            for key in keys:
                topic = _topic_of(self._config.topic_of(key))
                if topic is not None and self._match(topic):
                    found.add(topic)
        return found

    async def _scan(self) -> list[bytes]:
        self._cursor, keys = await self._client.scan(
            self._cursor, match=self._glob, count=self._config.scan, _type="stream"
        )
        return list(keys)

    async def _scan_masters(self) -> list[bytes]:
        """One SCAN step on each master of the cluster."""
        masters = primaries(self._client)
        self._cursors = {node.name: self._cursors.get(node.name, 0) for node in masters}
        found: list[bytes] = []
        for node in masters:
            reply = await self._client.execute_command(
                "SCAN",
                self._cursors[node.name],
                "MATCH",
                self._glob,
                "COUNT",
                self._config.scan,
                "TYPE",
                "stream",
                target_nodes=node,
            )
            if isinstance(reply, dict):  # some redis-py versions key a reply by node name
                reply = next(iter(reply.values()))
            cursor, keys = reply
            if isinstance(cursor, dict):  # redis-py's cluster SCAN keys the cursor by node
                cursor = next(iter(cursor.values()), 0)
            self._cursors[node.name] = int(cursor)
            found += keys
        return found


def _topic_of(raw: bytes) -> str | None:
    """The AMB topic a stream key names, or None for a key no topic names (bad UTF-8, spaces...):
    such a stream is another program's business, not a topic to read."""
    try:
        return validate_topic(raw.decode(), remember=False)
    except (UnicodeDecodeError, InvalidTopicError):
        return None
