"""``agent-message-bus[redis]`` installs from the wheels with redis-py and no other driver, lists the backend
and round-trips a message through the real broker (see ``check_backend_install``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import check_backend_install

pytestmark = [pytest.mark.packaging, pytest.mark.redis]


def test_redis_extra_installs_and_is_discovered(
    fresh_venv: Callable[[str], Path], redis_url: str, namespace: str
) -> None:
    check_backend_install(
        fresh_venv,
        "redis",
        "RedisBroker",
        f"{redis_url}{'&' if '?' in redis_url else '?'}namespace={namespace}",
    )
