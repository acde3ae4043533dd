"""The connection state of an HTTP transport: what ``CONNECTED`` and ``RECONNECTING`` mean for SQS.

SQS and SNS are HTTP APIs: there is no connection that drops, only requests that fail. So the
state follows the requests, every one of them, on both clients (receives, publishes, acks,
declarations), through botocore's events:

- a request that failed to reach the endpoint (refused, reset, timed out; after botocore's own
  retries) makes the transport ``RECONNECTING``;
- any answer from the endpoint, an error status included (a queue that no longer exists is an
  answer), makes it ``CONNECTED`` again.

While ``RECONNECTING``, a probe (one cheap ``ListQueues`` with backoff up to 2 s) keeps asking, so
the state comes back to ``CONNECTED`` soon after the endpoint does even on a bus that makes no
other request (no subscription, no publish): the state means "the last request got through or not",
and someone is always trying again. Receive loops notice an outage at once (their long poll
breaks); a bus that only publishes notices it at its next publish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from amb_core.aio import cancel_and_wait
from amb_core.backoff import Backoff
from amb_core.transport import ConnectionState

from .errors import SQSAuthenticationError, SQSConnectError, translate

__all__ = ["Liveness"]

log = logging.getLogger("amb.sqs")


class Liveness:
    """Watches a transport's clients and reports the connection state through ``set_state``.

    :param set_state: the transport's ``_set_state``.
    :param probe: makes one cheap request (its outcome reaches the watch through the events).
    :param description: the transport's redacted description, for logs.
    """

    def __init__(
        self,
        set_state: Callable[[ConnectionState], None],
        probe: Callable[[], Awaitable[object]],
        description: str,
    ) -> None:
        self._set_state = set_state
        self._probe = probe
        self._description = description
        self.down = False
        self._closed = False
        self._prober: asyncio.Task[None] | None = None

    def watch(self, client: Any) -> None:
        """Follow every request ``client`` makes."""
        client.meta.events.register("after-call", self._answered)
        client.meta.events.register("after-call-error", self._failed)

    def _answered(self, **_: Any) -> None:
        if self.down and not self._closed:
            self.down = False
            self._set_state(ConnectionState.CONNECTED)
            log.warning("%s answers again", self._description)

    def _failed(self, exception: BaseException, **_: Any) -> None:
        if self._closed:  # requests made while the transport closes say nothing of its state
            return
        error = translate(exception, "request", self._description)
        if not isinstance(error, SQSConnectError) or isinstance(error, SQSAuthenticationError):
            return  # not about reaching the endpoint
        if not self.down:
            self.down = True
            self._set_state(ConnectionState.RECONNECTING)
            log.warning("%s is unreachable (%s); reconnecting", self._description, error)
        if self._prober is None or self._prober.done():
            self._prober = asyncio.ensure_future(self._keep_probing())

    async def _keep_probing(self) -> None:
        backoff = Backoff(initial=0.25, cap=2.0)
        while self.down:
            await asyncio.sleep(backoff.next())
            try:
                await self._probe()
            except Exception as exc:  # expected while down; _failed has recorded it
                log.debug("probing %s failed: %r", self._description, exc)

    async def aclose(self) -> None:
        """Stop watching and probing: from now on no request changes the state (``CLOSED`` stays,
        though the transport's last requests, made while it closes, may fail or succeed)."""
        self._closed = True
        self.down = False
        prober, self._prober = self._prober, None
        if prober is not None and not prober.done():
            await cancel_and_wait(prober, f"the probe of {self._description}", log=log)
