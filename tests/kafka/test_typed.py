"""Typed payloads over Kafka (see tests/typed_cases.py)."""

from __future__ import annotations

import pytest

from tests.typed_cases import check_typed_handlers

pytestmark = [pytest.mark.kafka, pytest.mark.anyio]


async def test_typed_handlers_over_kafka(kafka_url: str) -> None:
    await check_typed_handlers(kafka_url)
