"""What a publish does while the connection is down: wait for nats-py's reconnection, up to the
``publish_timeout`` bound, or raise :class:`~amb_nats.errors.NATSBrokerUnavailableError`.

nats-py itself would take the publish into its reconnect buffer and return at once, then flush the
buffer on reconnection, before the subscribers' own connections are back: in core NATS those
messages reach nobody, and the publisher never learns it. So nothing is handed to nats-py while it
is not connected: the transport asks :meth:`Outage.until_connected` first (one status test on the
usual path).
"""

from __future__ import annotations

import asyncio
from typing import Any

from amb_core.errors import NotConnectedError

from .errors import NATSBrokerUnavailableError

__all__ = ["Outage"]

_RECHECK = 0.1  # seconds: the longest a waiter sleeps without looking at the status again


class Outage:
    """The connection's ups and downs as the transport's callbacks report them, and the bounded wait
    of publishes made meanwhile.

    :param description: the transport's (credentials redacted), for error texts.
    :param wait: the bound in seconds; 0 raises at once.
    """

    def __init__(self, description: str, wait: float) -> None:
        self._description = description
        self.wait = wait
        self._back = asyncio.Event()
        self._back.set()
        # Disconnections so far: a JetStream publish whose acknowledgement did not come compares
        # it with the count when it was sent, to tell an outage from a slow server.
        self.losses = 0

    def lost(self) -> None:
        """nats-py reported the disconnection."""
        self.losses += 1
        self._back.clear()

    def back(self) -> None:
        """nats-py reconnected, or the connection was closed: waiters look again."""
        self._back.set()

    async def until_connected(self, nc: Any, topic: str, limit: float | None = None) -> float:
        """Return once ``nc`` can take a publish (at once when it can), with the seconds waited.

        :param limit: a tighter bound than ``wait`` (what is left of a request's timeout).
        :raises NATSBrokerUnavailableError: when it is still down after the bound.
        :raises NotConnectedError: when the connection is closed meanwhile.
        """
        if nc.is_connected:
            return 0.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        bound = self.wait if limit is None else min(self.wait, limit)
        deadline = started + bound
        while not nc.is_connected:
            if nc.is_closed:
                raise NotConnectedError(f"{self._description} is closed")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise NATSBrokerUnavailableError(
                    f"{self._description}: the connection is down (reconnecting); the message "
                    f"for {topic!r} was not sent"
                    + (f" after waiting {bound:g}s for it to come back" if bound > 0 else "")
                )
            if self._back.is_set():  # nats-py knows before its callback has run: wait for it
                self._back.clear()
            try:
                await asyncio.wait_for(self._back.wait(), min(remaining, _RECHECK))
            except asyncio.TimeoutError:
                pass  # look at the status again
        return loop.time() - started
