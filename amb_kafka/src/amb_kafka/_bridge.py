"""The one crossing from librdkafka's threads back to the event loop, on asyncio and trio alike.

confluent-kafka blocks in C (``poll``, ``consume``, ``flush``), so those calls run in threads the
transport owns; what they produce comes back to the loop through :func:`call_soon`, which uses an
anyio event-loop token and therefore works on any loop anyio supports. Each crossing carries a
*batch* (a whole ``consume`` result, every delivery report of one ``poll``), never one message: one
hop costs tens of microseconds, far more than handling a message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio.from_thread
import anyio.lowlevel

__all__ = ["LoopToken", "call_soon", "current_token"]

log = logging.getLogger("amb.kafka")
LoopToken = Any


def current_token() -> LoopToken:
    """The token of the running loop, taken on the loop (in ``connect``/``subscribe``)."""
    return anyio.lowlevel.current_token()


def call_soon(token: LoopToken, func: Callable[..., Any], *args: Any) -> bool:
    """Run ``func(*args)`` on the loop from a driver thread and wait for it; False when the loop is
    gone (the caller then stops)."""
    try:
        anyio.from_thread.run_sync(func, *args, token=token)
        return True
    except Exception as exc:  # the loop ended under us: nobody is left to tell
        log.debug("event loop unavailable: %r", exc)
        return False
