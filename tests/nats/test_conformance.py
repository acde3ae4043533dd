"""The NATS transport passes the conformance suite in both modes, against a real nats-server.

The raw-driver providers are a separate plain nats-py client on the transport's server. Foreign
messages go where docs/backends/nats.md tells a non-AMB producer to publish: the topic's subject in
core mode; in JetStream mode a JetStream publish onto AMB's prefixed subject
(``<stream_prefix>.<topic>``), so that the stream keeps it as it keeps any producer's message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import nats
import pytest

from amb_core.testing.conformance import RestartableBroker, TransportConformance
from amb_core.transport import Transport
from amb_nats import NATSTransport
from amb_nats.naming import namespace_of, stream_name, subject_of

from .conftest import start_nats

pytestmark = pytest.mark.nats

_DEFAULT_LIMIT = 1024 * 1024  # nats-server's default max_payload, declared until connect


async def raw_client(transport: NATSTransport) -> Any:
    """A plain nats-py connection to the transport's servers, with its credentials."""
    cfg = transport.config
    options: dict[str, Any] = {"connect_timeout": 2, "allow_reconnect": False}
    for key in ("token", "user", "password"):
        if getattr(cfg, key) is not None:
            options[key] = getattr(cfg, key)
    return await nats.connect(list(cfg.servers), **options)


class TestJetStreamConformance(TransportConformance):
    """JetStream mode: durable, groups, at least once, native delay, replay, delivery count."""

    ack_wait = 1.0
    mode = "jetstream"

    @pytest.fixture
    def make_transport(self, nats_url: str, stream_prefix: str) -> Callable[[], Transport]:
        return lambda: NATSTransport.from_url(
            nats_url, mode="jetstream", stream_prefix=stream_prefix, storage="memory"
        )

    @pytest.fixture
    def restartable_broker(self) -> Iterator[RestartableBroker]:
        """A nats-server of this test alone; JetStream mode keeps its streams in files there."""
        server = start_nats()
        url = f"nats://127.0.0.1:{server.port}"
        try:
            yield RestartableBroker(
                lambda: NATSTransport.from_url(url, mode=self.mode, storage="file"),
                server.kill,
                server.start,
            )
        finally:
            server.close()

    async def inject_foreign(self, transport: Transport, topic: str, body: bytes) -> None:
        assert isinstance(transport, NATSTransport)
        nc = await raw_client(transport)
        try:
            if transport.mode == "jetstream":
                await nc.jetstream().publish(
                    subject_of(transport.config.stream_prefix, topic), body
                )
            else:
                await nc.publish(topic, body)
                await nc.flush()
        finally:
            await nc.close()

    async def capture_raw(
        self, transport: Transport, topic: str, publish: Callable[[], Awaitable[Any]]
    ) -> tuple[bytes, Mapping[str, str]]:
        """Core: a raw subscription to the topic's subject sees the message as the server passes
        it on. JetStream: the message as the stream stored it, read back by subject."""
        assert isinstance(transport, NATSTransport)
        nc = await raw_client(transport)
        try:
            if transport.mode == "jetstream":
                await publish()
                prefix = transport.config.stream_prefix
                stored = await nc.jetstream().get_last_msg(
                    stream_name(prefix, namespace_of(topic)), subject_of(prefix, topic)
                )
                return stored.data or b"", dict(stored.headers or {})
            sub = await nc.subscribe(topic)
            await nc.flush()
            await self.interest_spread()  # on a cluster, the bus may publish through another node
            await publish()
            msg = await sub.next_msg(timeout=5)
            return msg.data, dict(msg.headers or {})
        finally:
            await nc.close()

    def test_capabilities(self, make_transport: Callable[[], Transport]) -> None:
        caps = make_transport().capabilities
        assert caps.names() == [
            "persistent",
            "consumer_groups",
            "at_least_once",
            "ordered",
            "native_wildcards",
            "native_delay",
            "replay",
            "headers",
            "delivery_count",
        ]
        assert caps.max_message_size == _DEFAULT_LIMIT

    @pytest.mark.anyio
    async def test_max_message_size_is_the_servers_max_payload(
        self, make_transport: Callable[[], Transport]
    ) -> None:
        transport = make_transport()
        assert isinstance(transport, NATSTransport)
        await transport.connect()
        try:
            assert transport.capabilities.max_message_size == transport._nc.max_payload > 0
        finally:
            await transport.aclose()


class TestCoreConformance(TestJetStreamConformance):
    """Core NATS mode: at most once, native wildcards, queue groups, native request/reply."""

    mode = "core"

    @pytest.fixture
    def make_transport(self, nats_url: str, stream_prefix: str) -> Callable[[], Transport]:
        return lambda: NATSTransport.from_url(nats_url)

    def test_capabilities(self, make_transport: Callable[[], Transport]) -> None:
        caps = make_transport().capabilities
        assert caps.names() == [
            "consumer_groups",
            "ordered",
            "native_wildcards",
            "native_request_reply",
            "headers",
        ]
        assert caps.max_message_size == _DEFAULT_LIMIT
