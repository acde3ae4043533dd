"""Task helpers for transports whose driver runs on asyncio only (redis-py, nats-py, aiobotocore).

The core itself never imports this module (it runs on anyio, so trio works); a backend that owns
asyncio tasks of its own imports it to stop them correctly.

``task.cancel(); await task`` wrapped in ``except BaseException: pass`` cannot tell the task's
``CancelledError`` from one aimed at the caller while it waits: a caller cancelled in that moment
(a timeout around ``aclose()``, a task group shutting down) would go on as if nothing had happened.
``asyncio.wait`` never raises the awaited task's outcome, so whatever it raises belongs to the
caller; the task's outcome is read afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["cancel_and_wait", "discard_later"]

_log = logging.getLogger("amb.aio")
_background: set[asyncio.Task[Any]] = set()  # referenced until done (the loop keeps weak ones)


async def cancel_and_wait(
    task: asyncio.Future[Any],
    what: str,
    *,
    grace: float = 1.0,
    log: logging.Logger = _log,
) -> None:
    """Cancel ``task`` and return once it has ended; its own failure is logged, not raised.

    A task still running ``grace`` seconds after its cancellation swallowed it (Python 3.10/3.11's
    ``asyncio.wait_for`` does when its inner awaitable finishes at that moment): it is cancelled
    again, with a warning, rather than waited for forever.

    :param what: names the task in log lines.
    :param log: the backend's logger.
    :raises asyncio.CancelledError: when the *caller* is cancelled while it waits (the task may
        then still be finishing its own cancellation).
    """
    task.cancel()
    while not (await asyncio.wait({task}, timeout=grace))[0]:
        log.warning(
            "%s was still running %gs after its cancellation; cancelling again", what, grace
        )
        task.cancel()
    if not task.cancelled() and task.exception() is not None:
        log.warning("%s ended with an error while closing: %r", what, task.exception())


def discard_later(
    cleanup: Coroutine[Any, Any, Any], what: str, *, log: logging.Logger = _log
) -> None:
    """Run ``cleanup`` in the background, for a caller that is being cancelled and must not wait
    for it; its failure is logged."""

    async def run() -> None:
        try:
            await cleanup
        except Exception as exc:
            log.debug("%s failed: %r", what, exc)

    task = asyncio.get_running_loop().create_task(run())
    _background.add(task)
    task.add_done_callback(_background.discard)
