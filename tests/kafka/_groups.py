"""Seeing from the transport's debug log that a consumer group has split a topic among members."""

from __future__ import annotations

import pytest


def shares(caplog: pytest.LogCaptureFixture, group: str, partitions: int) -> list[str]:
    """Assignments of ``group`` that gave a member part of a topic of ``partitions``, not all of it
    (the transport logs each assignment at DEBUG on ``amb.kafka``: capture that level)."""
    return [
        r.getMessage()
        for r in caplog.records
        if f"group {group} assigned" in r.getMessage()
        and 0 < r.getMessage().count("partition=") < partitions
    ]
