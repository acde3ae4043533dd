"""Trace and span ids on the core's log records (loggers ``amb`` and ``amb.*``).

Installed by the plugin as a log-record factory that wraps the one in place, because a filter on
the ``amb`` logger would not see the records of its children (``amb.bus``, ``amb.subscriber``,
...), and a filter on handlers would need the application's handlers. Records of other loggers are
left as they are. The attributes are those of OpenTelemetry's logging instrumentation, so the same
format string serves both: ``%(otelTraceID)s`` and ``%(otelSpanID)s`` (``"0"`` outside a trace),
``%(otelTraceSampled)s``.

:class:`TraceContextFilter` does the same for any handler an application chooses.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace

__all__ = ["TraceContextFilter", "install_log_correlation", "uninstall_log_correlation"]

_installed: list[Any] = []  # the factory we replaced, while ours is in place


def _stamp(record: logging.LogRecord) -> None:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        record.otelTraceID = format(context.trace_id, "032x")
        record.otelSpanID = format(context.span_id, "016x")
        record.otelTraceSampled = context.trace_flags.sampled
    else:
        record.otelTraceID = "0"
        record.otelSpanID = "0"
        record.otelTraceSampled = False


class TraceContextFilter(logging.Filter):
    """A filter (for a handler) that stamps every record with the active trace and span ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        _stamp(record)
        return True


def install_log_correlation() -> None:
    """Stamp the records of ``amb`` loggers with trace ids from now on (idempotent)."""
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        name = record.name
        if name == "amb" or name.startswith("amb."):
            _stamp(record)
        return record

    _installed.append(previous)
    logging.setLogRecordFactory(factory)


def uninstall_log_correlation() -> None:
    """Put back the log-record factory that was in place before :func:`install_log_correlation`."""
    if _installed:
        logging.setLogRecordFactory(_installed.pop())
