"""Typed payloads over Redis Streams (see tests/typed_cases.py)."""

from __future__ import annotations

import pytest

from tests.typed_cases import check_typed_handlers

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


async def test_typed_handlers_over_redis_streams(redis_url: str, namespace: str) -> None:
    await check_typed_handlers(f"{redis_url}?namespace={namespace}")
