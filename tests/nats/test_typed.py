"""Typed payloads over NATS, core and JetStream (see tests/typed_cases.py)."""

from __future__ import annotations

import pytest

from tests.typed_cases import check_typed_handlers

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


@pytest.mark.parametrize("mode", ["core", "jetstream"])
async def test_typed_handlers_over_nats(nats_url: str, stream_prefix: str, mode: str) -> None:
    sep = "&" if "?" in nats_url else "?"
    await check_typed_handlers(
        f"{nats_url}{sep}mode={mode}&stream_prefix={stream_prefix}&storage=memory"
    )
