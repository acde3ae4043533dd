"""URLs, options, registration, credentials redaction, and typed connect failures."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import anyio
import pytest

from amb_core import MessageBus
from amb_core.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    InvalidOptionError,
    MessageTooLargeError,
    NoRespondersError,
    NotConnectedError,
    UnknownOptionError,
    UnsupportedError,
)
from amb_core.message import Message
from amb_core.testing.conformance import wait_until
from amb_core.testing.servers import ServerProcess, free_port
from amb_core.transport import ConnectionState, SubscriptionSpec
from amb_nats import NATSAuthenticationError, NATSBroker, NATSConnectError, NATSTransport, parse_url

from .conftest import start_nats

pytestmark = pytest.mark.nats


def test_defaults_and_modes() -> None:
    core = parse_url("nats://example.org")
    assert core.servers == ("nats://example.org",) and core.mode == "core"
    js = parse_url("nats://h:4223?mode=jetstream&stream_prefix=APP&max_age=60&storage=memory")
    assert (js.mode, js.stream_prefix, js.max_age, js.storage) == (
        "jetstream",
        "APP",
        60.0,
        "memory",
    )
    assert parse_url("nats://h", mode="js").mode == "jetstream", "keyword options win"
    assert core.publish_timeout == 5.0, "a publish waits 5 s for a lost connection by default"
    assert parse_url("nats://h?publish_timeout=0").publish_timeout == 0.0
    assert parse_url("nats://a:1,b:2").servers == ("nats://a:1", "nats://b:2")


def test_tls_and_credentials_are_accepted_and_redacted() -> None:
    tls = NATSTransport.from_url("tls://alice:s3cret@nats.example.org:4443")
    assert tls.config.servers == ("tls://alice:s3cret@nats.example.org:4443",)
    assert "s3cret" not in tls.description and "s3cret" not in repr(tls)
    assert "s3cret" not in repr(tls.config)
    token = NATSTransport.from_url("nats://T0KENVALUE@nats.example.org")
    assert "T0KENVALUE" not in repr(token) and "***@" in repr(token)
    query = NATSTransport.from_url("nats://h?token=abc123&user=u&password=pw9")
    assert (query.config.token, query.config.user, query.config.password) == ("abc123", "u", "pw9")
    assert "abc123" not in repr(query) and "pw9" not in repr(query)


@pytest.mark.parametrize(
    "url",
    [
        "nats://h?mode=kafka",
        "nats://h?bogus=1",
        "nats://h?max_age=soon",
        "nats://h?storage=tape",
        "nats://h?stream_prefix=a.b",
        "nats://h?publish_timeout=-1",
        "http://h",
        "nats://h:notaport",
    ],
)
def test_bad_urls_raise_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        NATSTransport.from_url(url)


def test_registered_for_nats_and_tls_urls() -> None:
    assert NATSBroker is NATSTransport
    for url in ("nats://127.0.0.1:4222", "tls://127.0.0.1:4222"):
        assert isinstance(MessageBus.from_url(url).transport, NATSTransport)


def test_jetstream_patterns_must_name_their_namespace() -> None:
    from amb_nats.naming import consumer_name, namespace_of, stream_name

    assert namespace_of("orders.eu.created") == "orders"
    assert namespace_of("dlq.orders.eu") == "dlq.orders"
    assert stream_name("AMB", "dlq.orders") == "AMB_dlq__orders"
    assert consumer_name("work ers", "a.*") != consumer_name("work ers", "a.>")
    for bad in ("*.created", ">", "dlq.*.x", "dlq.>"):
        with pytest.raises(UnsupportedError):
            namespace_of(bad)


@pytest.mark.anyio
async def test_refused_connection_is_typed_and_fast() -> None:
    port = free_port()  # nothing listens there
    transport = NATSTransport.from_url(f"nats://bob:hunter2@127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(NATSConnectError) as caught:
        await transport.connect()
    assert time.monotonic() - started < 4
    assert isinstance(caught.value, ConnectError)
    assert not isinstance(caught.value, AuthenticationError)
    assert "hunter2" not in str(caught.value)
    # Says what is wrong, where, and what to check: not "cannot connect within 5s" after 0.3 s.
    assert f"connection refused at 127.0.0.1:{port}" in str(caught.value)
    assert "is the NATS server running" in str(caught.value)
    assert "within" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "options"),
    [("nats://127.0.0.1:4222?bogus=1", {}), ("nats://127.0.0.1:4222", {"bogus": 1})],
)
def test_unknown_option_is_named(url: str, options: dict[str, object]) -> None:
    with pytest.raises(UnknownOptionError, match="unknown NATS option 'bogus'"):
        MessageBus.from_url(url, **options)


@pytest.mark.parametrize(
    ("url", "options", "named"),
    [
        ("nats://127.0.0.1:4222?replicas=three", {}, "replicas='three'"),
        ("nats://127.0.0.1:4222", {"connect_timeout": "soon"}, "connect_timeout='soon'"),
        ("nats://127.0.0.1:4222?storage=tape", {}, "storage='tape'"),
    ],
)
def test_bad_option_value_is_named(url: str, options: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidOptionError, match=named):
        MessageBus.from_url(url, **options)


@pytest.fixture(scope="module")
def locked_server() -> Iterator[ServerProcess]:
    server = start_nats(
        ["--user", "bob", "--pass", "right-pass"], auth='"user":"bob","pass":"right-pass",'
    )
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def token_server() -> Iterator[ServerProcess]:
    server = start_nats(["--auth", "tok-123"], auth='"auth_token":"tok-123",')
    try:
        yield server
    finally:
        server.close()


@pytest.mark.anyio
async def test_bad_password_is_an_authentication_error_without_the_password(
    locked_server: ServerProcess,
) -> None:
    port = locked_server.port
    for url in (f"nats://bob:wrong-pass@127.0.0.1:{port}", f"nats://127.0.0.1:{port}"):
        started = time.monotonic()
        with pytest.raises(NATSAuthenticationError) as caught:
            await NATSTransport.from_url(url).connect()
        assert time.monotonic() - started < 4
        assert isinstance(caught.value, AuthenticationError)
        assert "wrong-pass" not in str(caught.value)
    async with MessageBus.from_url(f"nats://bob:right-pass@127.0.0.1:{port}") as bus:
        got: list[Message] = []
        await bus.subscribe("auth.ok", got.append)
        await bus.publish("auth.ok", 1)
        await wait_until(lambda: bool(got), 5, "the message")
        assert [m.payload for m in got] == [1]


@pytest.mark.anyio
async def test_token_auth(token_server: ServerProcess) -> None:
    port = token_server.port
    with pytest.raises(AuthenticationError) as caught:
        await NATSTransport.from_url(f"nats://bad-token@127.0.0.1:{port}").connect()
    assert "bad-token" not in str(caught.value)
    for url in (f"nats://tok-123@127.0.0.1:{port}", f"nats://127.0.0.1:{port}?token=tok-123"):
        transport = NATSTransport.from_url(url)
        await transport.connect()
        await transport.aclose()


@pytest.mark.anyio
async def test_no_responders_is_typed_and_immediate(nats_url: str) -> None:
    async with MessageBus.from_url(nats_url) as bus:
        started = time.monotonic()
        with pytest.raises(NoRespondersError) as caught:
            await bus.request("nobody.listens.here", 1, timeout=10)
        assert time.monotonic() - started < 1
        assert "nobody.listens.here" in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["core", "jetstream"])
async def test_oversized_message_is_typed(nats_url: str, stream_prefix: str, mode: str) -> None:
    transport = NATSTransport.from_url(nats_url, mode=mode, stream_prefix=stream_prefix)
    await transport.connect()
    try:
        limit = transport.capabilities.max_message_size
        assert limit
        with pytest.raises(MessageTooLargeError):
            await transport.publish(Message("big.one", b"x" * (limit + 1)))
    finally:
        await transport.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["core", "jetstream"])
@pytest.mark.parametrize("reserved", [False, True], ids=["direct", "generic"])
async def test_headers_count_towards_the_size_limit(
    nats_url: str, stream_prefix: str, mode: str, reserved: bool
) -> None:
    """The server's max_payload bounds headers and body together, and closes the connection of a
    client that sends more (nats-py checks the body only): a body that fits with headers that do
    not is refused before sending, with the whole size, and the connection stays up. ``reserved``
    takes the generic encoder (a user header named like AMB's)."""
    topic = f"hdrsize{uuid.uuid4().hex[:8]}"
    transport = NATSTransport.from_url(nats_url, mode=mode, stream_prefix=stream_prefix)
    await transport.connect()
    try:
        sub = await transport.subscribe(SubscriptionSpec(f"{topic}.x"))
        limit = transport.capabilities.max_message_size
        assert limit
        headers = {"amb-ttl": "60"} if reserved else {}
        headers["trace"] = "t" * 300
        with pytest.raises(MessageTooLargeError) as caught:
            await transport.publish(Message(f"{topic}.x", b"x" * (limit - 100), headers))
        assert caught.value.limit == limit and caught.value.size > limit
        await transport.publish(Message(f"{topic}.x", "still connected", headers))
        with anyio.fail_after(10):
            delivery = await sub.__anext__()
        assert delivery.message.payload == "still connected"
        assert transport.state is ConnectionState.CONNECTED
        await sub.aclose()
    finally:
        await transport.aclose()


@pytest.mark.anyio
async def test_jetstream_refuses_a_pattern_without_namespace(
    nats_url: str, stream_prefix: str
) -> None:
    transport = NATSTransport.from_url(nats_url, mode="jetstream", stream_prefix=stream_prefix)
    await transport.connect()
    try:
        with pytest.raises(UnsupportedError):
            await transport.subscribe(SubscriptionSpec("*.created"))
    finally:
        await transport.aclose()


def test_delivery_count_from_ack_subjects() -> None:
    from nats.aio.msg import Msg

    from amb_nats.jetstream import delivered

    v1 = "$JS.ACK.AMB_orders.workers_1a2b3c4d.3.17.9.1764050000000000000.0"
    v2 = "$JS.ACK._.ACCHASH.AMB_orders.workers_1a2b3c4d.4.17.9.1764050000000000000.0.rnd"
    for reply, expected in ((v1, 3), (v2, 4)):
        assert delivered(reply) == expected
        assert Msg.Metadata._from_reply(reply).num_delivered == expected
    assert delivered("not.an.ack") == 1


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A nats-server that requires TLS, with a self-signed certificate for 127.0.0.1."""
    import shutil
    import socket
    import subprocess

    from .conftest import nats_binary

    openssl, binary = shutil.which("openssl"), nats_binary()
    if openssl is None or binary is None:
        pytest.skip("needs openssl and nats-server")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    def ready(port: int) -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return b"tls_required" in sock.recv(4096)

    argv = [binary, "-a", "127.0.0.1", "-p", "{port}", "--tls", "--tlscert", cert, "--tlskey", key]
    server = ServerProcess(argv, ready, name="nats-tls").start()
    try:
        yield server, cert
    finally:
        server.close()


@pytest.mark.anyio
async def test_tls_with_a_private_ca(tls_server: tuple[ServerProcess, str]) -> None:
    server, cert = tls_server
    async with MessageBus.from_url(f"tls://127.0.0.1:{server.port}?tls_ca={cert}") as bus:
        got: list[Message] = []
        await bus.subscribe("tls.check", got.append)
        await bus.publish("tls.check", {"secure": True})
        await wait_until(lambda: bool(got), 5, "the message over TLS")
        assert got[0].payload == {"secure": True}
    started = time.monotonic()
    with pytest.raises(ConnectError):  # the self-signed certificate is not in the system store
        await NATSTransport.from_url(f"tls://127.0.0.1:{server.port}").connect()
    assert time.monotonic() - started < 6
    with pytest.raises(ConfigurationError):
        await NATSTransport.from_url(f"tls://127.0.0.1:{server.port}?tls_ca=/nonexistent").connect()


@pytest.mark.anyio
async def test_connect_again_after_close(nats_url: str) -> None:
    transport = NATSTransport.from_url(nats_url)
    for _ in range(2):
        await transport.connect()
        await transport.connect()  # idempotent
        sub = await transport.subscribe(SubscriptionSpec("again.x"))
        await transport.publish(Message("again.x", 1))
        with anyio.fail_after(5):
            assert (await sub.__anext__()).message.payload == 1
        assert transport.state is ConnectionState.CONNECTED, "connected again after a close"
        await transport.aclose()
        await transport.aclose()  # idempotent
        assert transport.state is ConnectionState.CLOSED
    with pytest.raises(NotConnectedError):
        await transport.publish(Message("again.x", 2))


@pytest.mark.parametrize(
    "message",
    [
        Message("w.a", {"x": 1}),
        Message("w.a", b"\x00raw", {"trace": "t 1", "x-empty": ""}, key="k", ttl=1.5, priority=3),
        Message("w.a", "text", correlation_id="c", reply_to="_INBOX.x.1", sender=" bot\r\n"),
        Message("w.a", None, {"weird\nvalue": "v"}),  # not a valid key: the generic path
        Message("w.a", 1, {"amb-ttl": "5"}),  # a reserved name: the generic path
    ],
)
def test_direct_header_block_equals_the_wire_encoder(message: Message) -> None:
    from amb_core.wire import H_TOPIC, encode
    from amb_nats._client import _FastHeadersClient
    from amb_nats._wire import header_text

    body, headers = encode(message)
    del headers[H_TOPIC]
    fast = header_text(message)
    if fast is None:
        assert any(k.startswith("amb-") or not k.isidentifier() for k in message.headers)
        return
    assert fast[0] == body
    parsed = _FastHeadersClient._parse_header_lines(fast[1].encode())
    assert parsed == {
        k: v.replace("\r", " ").replace("\n", " ").strip() for k, v in headers.items()
    }


def test_the_seed_spelling_takes_a_url_like_every_broker() -> None:
    by_keyword = NATSBroker(url="nats://127.0.0.1:4222?mode=jetstream", stream_prefix="X")
    positional = NATSBroker("nats://127.0.0.1:4222", mode="jetstream")
    assert by_keyword.mode == positional.mode == "jetstream"
    assert by_keyword.config.stream_prefix == "X"
    assert NATSBroker(parse_url("nats://127.0.0.1:4222")).mode == "core"
    with pytest.raises(ConfigurationError):
        NATSBroker(parse_url("nats://127.0.0.1:4222"), mode="jetstream")


def test_capabilities_by_mode_are_what_each_mode_declares() -> None:
    """``amb backends`` reads capabilities_by_mode: it must say what a transport of each mode has."""
    from amb_nats import NATSTransport

    for mode, caps in NATSTransport.capabilities_by_mode.items():
        assert NATSTransport(f"nats://127.0.0.1:4222?mode={mode}").capabilities == caps
