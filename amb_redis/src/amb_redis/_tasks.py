"""Stopping a background task without swallowing the caller's own cancellation.

``task.cancel(); try: await task except BaseException: pass`` hides a cancellation of the *caller*
that arrives while it waits (a timeout around ``aclose()``, an anyio cancel scope, a task group
shutting down): awaiting a task re-raises the caller's CancelledError exactly like the task's own,
and the ``pass`` ate both. ``asyncio.wait`` never raises the task's outcome, so whatever it raises
is the caller's; the task's outcome is read afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["cancel_and_wait"]

log = logging.getLogger("amb.redis")


async def cancel_and_wait(task: asyncio.Task[Any], what: str) -> None:
    """Cancel ``task`` and wait until it has ended.

    Its cancellation is expected and dropped; any other failure of it is logged (at warning: a
    background task that failed is worth knowing about, but closing goes on).

    :raises asyncio.CancelledError: when the *caller* is cancelled while it waits (the task may
        then still be finishing its own cancellation).
    """
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        log.warning("%s ended with an error while closing: %r", what, task.exception())
