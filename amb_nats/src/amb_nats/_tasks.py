"""Cancelling a task of our own without mistaking its cancellation for the caller's.

``task.cancel(); await task`` wrapped in ``except BaseException: pass`` cannot tell the task's
``CancelledError`` from one aimed at the caller while it waits: a caller cancelled in that moment
(a timeout, a task group shutting down) would go on as if nothing had happened. ``asyncio.wait``
never raises the awaited task's outcome, so whatever it raises belongs to the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["cancel_and_wait", "discard_later"]

log = logging.getLogger("amb.nats")
_background: set[asyncio.Task[Any]] = set()  # referenced until done (the loop keeps weak ones)


async def cancel_and_wait(task: asyncio.Future[Any], what: str) -> None:
    """Cancel ``task`` and return once it has finished; its own failure is logged, not raised.

    :raises asyncio.CancelledError: when the caller is cancelled meanwhile (the task still ends).
    """
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        log.debug("%s ended with %r after its cancellation", what, task.exception())


def discard_later(cleanup: Coroutine[Any, Any, Any], what: str) -> None:
    """Run ``cleanup`` in the background, for a caller that is being cancelled and must not wait;
    its failure is logged."""

    async def run() -> None:
        try:
            await cleanup
        except Exception as exc:
            log.debug("%s failed: %r", what, exc)

    task = asyncio.get_running_loop().create_task(run())
    _background.add(task)
    task.add_done_callback(_background.discard)
