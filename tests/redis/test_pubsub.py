"""Pub/sub specifics: what a foreign PUBLISH of malformed or odd bytes becomes.

The packed envelope (``AMB1{json headers}\\n<body>``) is AMB's own framing on a broker without
headers; docs/wire-format.md promises that a malformed one is dead-lettered as ``undecodable``,
never handed to a handler as if it were a payload.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from amb_core import MessageBus
from amb_core.deadletter import H_DLQ_ERROR, H_DLQ_REASON, RetryPolicy
from amb_core.message import Message
from amb_core.testing.conformance import wait_until
from amb_redis import RedisTransport

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

MALFORMED = [
    b'AMB1{"amb-id": broken\n{"x":1}',  # the header line is not JSON
    b'AMB1{"amb-ts":"x"}',  # no newline: the header line never ends
    b'AMB1["not", "an", "object"]\n{}',  # JSON, but not an object of strings
    b'AMB1{"amb-ts":"x"}\n{"x":1}',  # a well-formed line with a non-numeric amb-ts
]


async def _publish_raw(url: str, channel: str, *bodies: bytes) -> None:
    """PUBLISH with redis-py alone, as a program without AMB would."""
    raw = aioredis.Redis.from_url(url)
    try:
        for body in bodies:
            assert await raw.publish(channel, body) >= 1, "the bus is subscribed"
    finally:
        await raw.aclose()


async def test_malformed_envelopes_are_dead_lettered(redis_url: str, namespace: str) -> None:
    transport = RedisTransport(redis_url, mode="pubsub", namespace=namespace)
    async with MessageBus(transport, retry=RetryPolicy(max_attempts=1)) as bus:
        handled: list[Message] = []
        dead: list[Message] = []
        await bus.subscribe("env.in", handled.append)
        await bus.subscribe("dlq.env.>", dead.append)
        await _publish_raw(redis_url, f"{namespace}:env.in", *MALFORMED, b'{"ok": 1}')
        await wait_until(
            lambda: len(dead) == len(MALFORMED) and len(handled) == 1,
            10,
            lambda: f"every malformed envelope dead, the plain one handled: {dead}, {handled}",
        )
        assert [m.payload for m in handled] == [{"ok": 1}], "nothing malformed reached the handler"
        assert sorted(m.payload for m in dead) == sorted(MALFORMED), "the raw bytes, unchanged"
        assert {m.headers[H_DLQ_REASON] for m in dead} == {"undecodable"}
        errors = {bytes(m.payload): m.headers[H_DLQ_ERROR] for m in dead}
        assert "not JSON" in errors[MALFORMED[0]]
        assert "no end of its header line" in errors[MALFORMED[1]]
        assert "amb-ts" in errors[MALFORMED[3]]


async def test_a_nul_led_body_is_reported_as_what_it_is(redis_url: str, namespace: str) -> None:
    """1 MB starting with a NUL byte is not JSON at its first byte; it is not UTF-16 either."""
    body = b"\x00" + b"a" * (1 << 20)
    transport = RedisTransport(redis_url, mode="pubsub", namespace=namespace)
    async with MessageBus(transport, retry=RetryPolicy(max_attempts=1)) as bus:
        handled: list[Message] = []
        dead: list[Message] = []
        await bus.subscribe("nul.in", handled.append)
        await bus.subscribe("dlq.nul.>", dead.append)
        await _publish_raw(redis_url, f"{namespace}:nul.in", body)
        await wait_until(lambda: len(dead) == 1, 10, "the NUL-led body dead-lettered")
        assert handled == []
        error = dead[0].headers[H_DLQ_ERROR]
        assert "utf-16" not in error.lower(), error
        assert "char 0" in error and "not valid JSON" in error, error
