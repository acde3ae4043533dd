"""The transport's connection state (``amb_core.transport.ConnectionState``), kept current.

Every part of the transport that talks to Redis reports what it learns: a connection error in a
publish, a stream read or the pub/sub reader marks the transport ``RECONNECTING`` at once. But a
transport that neither publishes nor reads (an idle publisher) would never learn that Redis went
away, and nothing would say when it is back. So each connected transport also runs a heartbeat:
one ``PING`` every ``heartbeat`` seconds (1 s by default; a few microseconds of Redis CPU), bounded
by ``connect_timeout`` (a connection that hangs half-open counts as lost). While Redis is
unreachable it pings every ``min(heartbeat, 0.25)`` seconds, and the first answer marks the
transport ``CONNECTED`` again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ._tasks import bounded
from .errors import is_connection_error

__all__ = ["Heartbeat"]

log = logging.getLogger("amb.redis")


class Heartbeat:
    """PINGs Redis in the background and reports the outcome.

    :param client: a ``redis.asyncio.Redis``.
    :param every: seconds between PINGs while Redis answers.
    :param bound: the longest a PING may take before the connection counts as lost.
    :param lost: called with the error when a PING fails.
    :param back: called when a PING succeeds.
    """

    def __init__(
        self,
        client: Any,
        every: float,
        bound: float,
        lost: Callable[[BaseException], None],
        back: Callable[[], None],
    ) -> None:
        self._client = client
        self._every = every
        self._bound = bound
        self._lost = lost
        self._back = back

    async def run(self) -> None:
        """PING until cancelled."""
        while True:
            try:
                with bounded(self._bound):
                    await self._client.ping()
            except Exception as exc:
                if not is_connection_error(exc):  # e.g. a restarted Redis that now wants AUTH
                    log.warning("Redis heartbeat PING failed: %r", exc)
                self._lost(exc)
                await asyncio.sleep(min(self._every, 0.25))
                continue
            self._back()
            await asyncio.sleep(self._every)
