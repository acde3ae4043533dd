"""Logging for ``amb run``: to stderr, at a chosen level, as plain lines or JSON lines.

JSON lines (``--log-format json``) suit log collectors: one object per record with ``ts`` (epoch
seconds), ``level``, ``logger``, ``message``, and ``exc`` when an exception is attached; fields a
plugin adds to records (``trace_id``, ``span_id`` from a tracing plugin) are kept.
"""

from __future__ import annotations

import json
import logging
import sys

__all__ = ["JSONFormatter", "configure_logging"]

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value if isinstance(value, (str, int, float, bool)) else repr(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "plain") -> None:
    """Send every log record at ``level`` or above to stderr, formatted as ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
