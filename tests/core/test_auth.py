"""amb_core.auth: one way for every backend to tell a refused credential from an outage.

Each backend's own declaration is proven against its real broker (tests/redis/test_faults.py,
tests/nats/test_config.py, tests/kafka/test_sasl.py, tests/sqs/test_faults.py)."""

from __future__ import annotations

from amb_core.auth import AuthSignals
from amb_core.errors import AuthenticationError, ConnectError


class DriverAuthError(Exception):
    pass


class DriverReply(Exception):
    pass


class CodedError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(f"failed with {code}")
        self.code = code


def test_types_phrases_and_codes() -> None:
    signals = AuthSignals(
        types=(DriverAuthError,),
        phrases=("WRONGPASS",),
        codes=frozenset({"AccessDenied"}),
        code_of=lambda e: getattr(e, "code", None),
    )
    assert signals.matches(DriverAuthError("anything"))
    assert signals.matches(DriverReply("wrongpass invalid username-password pair"))
    assert signals.matches(CodedError("AccessDenied"))
    assert not signals.matches(CodedError("Throttled"))
    assert not signals.matches(ConnectionRefusedError(111, "Connection refused"))
    assert not signals.matches(ConnectError("cannot reach it"))


def test_phrases_can_be_limited_to_server_replies() -> None:
    signals = AuthSignals(phrases=("auth",), phrase_types=(DriverReply,))
    assert signals.matches(DriverReply("NOAUTH Authentication required"))
    assert not signals.matches(OSError("cannot resolve auth.example.com"))


def test_an_error_amb_already_typed_is_one() -> None:
    assert AuthSignals().matches(AuthenticationError("refused"))
    assert not AuthSignals().matches(RuntimeError("refused"))
