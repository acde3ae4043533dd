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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio

__all__ = ["bounded", "cancel_and_wait"]

log = logging.getLogger("amb.redis")


async def cancel_and_wait(task: asyncio.Task[Any], what: str, grace: float = 1.0) -> None:
    """Cancel ``task`` and wait until it has ended.

    Its cancellation is expected and dropped; any other failure of it is logged (at warning: a
    background task that failed is worth knowing about, but closing goes on). A task that is
    still running ``grace`` seconds after its cancellation swallowed it (Python 3.11's
    ``asyncio.wait_for`` does, when its inner awaitable finishes at the same moment): it is
    cancelled again, with a warning, rather than waited for forever.

    :raises asyncio.CancelledError: when the *caller* is cancelled while it waits (the task may
        then still be finishing its own cancellation).
    """
    task.cancel()
    while not (await asyncio.wait([task], timeout=grace))[0]:
        log.warning(
            "%s was still running %gs after its cancellation; cancelling again", what, grace
        )
        task.cancel()
    if not task.cancelled() and task.exception() is not None:
        log.warning("%s ended with an error while closing: %r", what, task.exception())


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """``with bounded(s): await ...``: a timeout that never swallows a cancellation.

    ``asyncio.wait_for`` on Python 3.10 and 3.11 returns the result instead of raising when the
    caller is cancelled just as its awaitable finishes, so a task cancelled at that moment lives on;
    anyio's cancel scope (the core's own dependency) has no such race.

    :raises TimeoutError: when the block takes longer than ``seconds``.
    """
    with anyio.fail_after(seconds):
        yield
