"""Backoff: the delays between attempts to reach a broker again.

Every reconnect loop (a subscription reopened by the bus, a Redis read or publish retried through a
lost connection, an SQS liveness probe) waits a little longer after each failure, up to a cap, so
that a broker coming back is not hammered by every client at once. The loops used to spell out
``delay = min(delay * 2, cap)`` each with its own numbers; they now draw their delays from one
:class:`Backoff`::

    backoff = Backoff(initial=0.05, cap=1.0)
    while True:
        try:
            return await attempt()
        except ConnectionError:
            await anyio.sleep(backoff.next())

A loop that succeeds calls :meth:`Backoff.reset`, so the next outage starts again from ``initial``.
"""

from __future__ import annotations

import random

import attrs

__all__ = ["Backoff"]


@attrs.define
class Backoff:
    """Exponential delays with a cap and optional jitter; an iterator too (it never ends).

    :param initial: the first delay, in seconds.
    :param cap: no delay is longer than this.
    :param factor: each delay is the previous one times this.
    :param jitter: random spread, as a fraction of the delay (``0.1``: +-10 %), so that many clients
        that lost the broker together do not all come back in the same instant. ``0`` is exact.
    """

    initial: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))
    cap: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    factor: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    jitter: float = attrs.field(
        default=0.0, validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.lt(1))
    )
    _current: float = attrs.field(init=False, default=0.0)

    def next(self) -> float:
        """The delay to wait now; the one after it is ``factor`` times longer, up to ``cap``."""
        base = min(self._current or self.initial, self.cap)
        self._current = min(base * self.factor, self.cap)
        if self.jitter:
            return base * (1 + random.uniform(-self.jitter, self.jitter))
        return base

    def peek(self) -> float:
        """The delay :meth:`next` will give (before jitter), for a log line said beforehand."""
        return min(self._current or self.initial, self.cap)

    @property
    def failing(self) -> bool:
        """True when :meth:`next` was called since the last :meth:`reset`: the loop has failed
        since it last succeeded (the first success after it is a reconnection worth reporting)."""
        return self._current != 0.0

    def reset(self) -> None:
        """Start again from ``initial``: call it once an attempt succeeds."""
        self._current = 0.0

    def __iter__(self) -> Backoff:
        return self

    def __next__(self) -> float:
        return self.next()
