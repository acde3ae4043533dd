"""Keeps what the libraries say during a mode in that mode's folder, out of the figures.

The buses log their reconnects (warnings) through :mod:`logging`, and librdkafka prints its own
connection errors straight to file descriptor 2, hundreds of lines per broker outage. Both go to
files in the mode's folder (``soak.log``, ``stderr.log``), which the report names, so the terminal
shows the progress lines and the figures only.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["captured"]


@contextmanager
def captured(folder: Path) -> Iterator[None]:
    """Send log records and everything written to stderr to files in ``folder`` meanwhile."""
    handler = logging.FileHandler(folder / "soak.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    sys.stderr.flush()
    saved = os.dup(2)
    with (folder / "stderr.log").open("ab") as errors:
        os.dup2(errors.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        root.removeHandler(handler)
        handler.close()
