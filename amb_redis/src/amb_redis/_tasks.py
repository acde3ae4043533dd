"""Stopping background tasks and bounding waits without swallowing the caller's cancellation.

``cancel_and_wait`` is the core's (:mod:`amb_core.aio`), logging to ``amb.redis``; ``bounded`` is
the timeout every wait of this backend uses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio

from amb_core import aio

__all__ = ["bounded", "cancel_and_wait"]

log = logging.getLogger("amb.redis")


async def cancel_and_wait(task: asyncio.Task[Any], what: str, grace: float = 1.0) -> None:
    """:func:`amb_core.aio.cancel_and_wait`, logging to ``amb.redis``."""
    await aio.cancel_and_wait(task, what, grace=grace, log=log)


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
