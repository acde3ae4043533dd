"""Deadlines that travel with the work.

A message's deadline is its ``amb-ts`` plus its ``amb-ttl`` (:attr:`Message.deadline`): one notion
of expiry, the one messages already had, so a polyglot agent reads it from the same two headers.
A request carries its timeout that way, so a responder that takes it too late never handles it (it is
dead-lettered with reason ``expired``, and the requester, whose own timer is authoritative, has
given up). While a handler runs for a message that has a deadline, :func:`current_deadline` returns
it, and a request the handler makes is bounded by the earlier of its own timeout and that deadline:
the budget shrinks along a chain of agents instead of restarting at every hop. Deadlines are
absolute epoch seconds, so they assume synchronised clocks (NTP), as docs/wire-format.md says.

Messages without a TTL never touch the context variable: the cost stays off their path.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

__all__ = ["bounded_timeout", "current_deadline"]

_deadline: ContextVar[float | None] = ContextVar("amb_deadline", default=None)


def current_deadline() -> float | None:
    """The deadline (epoch seconds) of the message whose handler is running, or None."""
    return _deadline.get()


def bounded_timeout(timeout: float) -> float:
    """``timeout``, shortened to what is left of the running handler's deadline (never below 0)."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    return max(0.0, min(timeout, deadline - time.time()))
