"""Typed payloads over SQS (see tests/typed_cases.py)."""

from __future__ import annotations

import pytest

from tests.typed_cases import check_typed_handlers

pytestmark = [pytest.mark.sqs, pytest.mark.anyio]


async def test_typed_handlers_over_sqs(sqs_url: str) -> None:
    await check_typed_handlers(sqs_url)
