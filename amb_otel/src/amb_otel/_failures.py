"""Failed handler calls waiting for the bus's decision (retry or dead letter).

The bus reports a retry or a dead letter *after* the attempt's ``on_receive`` has returned, but the
conventions want a retry as an event on the process span of the attempt that failed. So a failed
attempt's span is kept open here, with the instant it failed, until :meth:`Failures.pop` hands it
to the decision; it then ends at that instant, so its duration is the handler's. The bus decides at
once after the failure; an attempt nobody decides on (a request its requester cancelled) ends after
:data:`GRACE` seconds or when more than :data:`LIMIT` wait, so nothing leaks.
"""

from __future__ import annotations

import time

import attrs
from opentelemetry.trace import Span

__all__ = ["Failed", "Failures"]

GRACE = 5.0
LIMIT = 1000


@attrs.define(slots=True)
class Failed:
    """A failed attempt: its span (None without tracing), when it failed, its metric attributes."""

    span: Span | None
    at_ns: int
    attributes: dict[str, str]

    def end(self) -> None:
        if self.span is not None:
            self.span.end(end_time=self.at_ns)


class Failures:
    """Failed attempts by message id, oldest first."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[str, Failed] = {}

    def put(self, message_id: str, failed: Failed) -> None:
        waiting = self._waiting
        earlier = waiting.pop(message_id, None)
        if earlier is not None:
            earlier.end()
        waiting[message_id] = failed
        oldest = next(iter(waiting.values()))
        if len(waiting) > LIMIT or failed.at_ns - oldest.at_ns > GRACE * 1e9:
            self._expire(failed.at_ns)

    def pop(self, message_id: str) -> Failed | None:
        return self._waiting.pop(message_id, None)

    def _expire(self, now_ns: int) -> None:
        waiting = self._waiting
        while waiting:
            key, oldest = next(iter(waiting.items()))
            if len(waiting) <= LIMIT and now_ns - oldest.at_ns <= GRACE * 1e9:
                break
            del waiting[key]
            oldest.end()


def now_ns() -> int:
    """The clock spans use (epoch nanoseconds)."""
    return time.time_ns()
