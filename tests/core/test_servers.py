"""The one helper every broker-missing skip goes through (it skips locally and fails under CI), and
the ports cluster fixtures start their nodes on."""

from __future__ import annotations

import socket

import pytest

from amb_core.testing.servers import in_ci, listening_ports, skip_or_fail


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


def test_listening_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    """Six Redis Cluster nodes: no port, bus ports (+10000) included, is chosen twice."""
    ports = listening_ports(6, 10000)
    every = ports + [port + 10000 for port in ports]
    assert len(set(every)) == 12
    assert all(port < 32768 for port in every), "below Linux's ephemeral range"
    for port in every:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))  # free
