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
"""

from __future__ import annotations

from typing import Any

from amb_core.errors import InvalidTopicError
from amb_core.topics import matcher, validate_topic

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
        self._prefix = len(config.namespace) + 1
        self._registry_count = -1
        self._cursor = 0

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
            self._cursor, keys = await self._client.scan(
                self._cursor, match=self._glob, count=self._config.scan, _type="stream"
            )
            for key in keys:
                topic = _topic_of(key[self._prefix :])
                if topic is not None and self._match(topic):
                    found.add(topic)
        return found


def _topic_of(raw: bytes) -> str | None:
    """The AMB topic a stream key names, or None for a key no topic names (bad UTF-8, spaces...):
    such a stream is another program's business, not a topic to read."""
    try:
        return validate_topic(raw.decode(), remember=False)
    except (UnicodeDecodeError, InvalidTopicError):
        return None
