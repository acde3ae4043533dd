"""The one helper every broker-missing skip goes through: it skips locally and fails under CI."""

from __future__ import annotations

import pytest

from amb_core.testing.servers import in_ci, skip_or_fail


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE"])
def test_missing_broker_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match=r"no broker here.*CI=true"):
        skip_or_fail("no broker here")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_missing_broker_skips_locally(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception, match="no broker here"):
        skip_or_fail("no broker here")
