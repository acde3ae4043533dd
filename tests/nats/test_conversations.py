"""Streams and gather on core NATS, where the server says at once that a request reached nobody
(its 503 status to the request's per-request reply subject), and where a plain nats-py responder
answering with ``msg.respond`` takes part in a gather."""

from __future__ import annotations

import time
import uuid

import anyio
import nats
import pytest

from amb_core import MessageBus, NoRespondersError

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def test_gather_with_nobody_listening_ends_at_once(nats_url: str) -> None:
    async with MessageBus.from_url(nats_url) as bus:
        started = time.monotonic()
        assert await bus.gather(unique("nobody.") + ".x", None, timeout=10) == []
        assert time.monotonic() - started < 2, "the no-responders status ends the gather"


async def test_stream_with_nobody_listening_raises_at_once(nats_url: str) -> None:
    async with MessageBus.from_url(nats_url) as bus:
        started = time.monotonic()
        with pytest.raises(NoRespondersError):
            await bus.stream(unique("nobody.") + ".y", None, timeout=10).__anext__()
        assert time.monotonic() - started < 2


async def test_a_plain_nats_responder_answers_a_gather(nats_url: str) -> None:
    topic = unique("quotes.")
    raw = await nats.connect(nats_url)
    try:

        async def respond(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(b'{"from": "raw"}')

        await raw.subscribe(topic, cb=respond)
        await raw.flush()
        async with MessageBus.from_url(nats_url, name="amb") as bus:
            await bus.subscribe(topic, lambda m: {"from": "amb"})
            replies = await bus.gather(topic, None, timeout=10, max_replies=2)
        assert sorted(r.payload["from"] for r in replies) == ["amb", "raw"]
    finally:
        await raw.close()


async def test_the_no_responders_signal_names_its_request(nats_url: str) -> None:
    """Two gathers at once, one to nobody: only that one ends early."""
    topic = unique("busy.")
    async with MessageBus.from_url(nats_url) as bus:

        async def slow(message: object) -> str:
            await anyio.sleep(0.5)
            return "done"

        await bus.subscribe(topic, slow)
        results: dict[str, list[object]] = {}

        async def run(name: str, target: str) -> None:
            results[name] = [
                r.payload for r in await bus.gather(target, None, timeout=5, max_replies=1)
            ]

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "busy", topic)
            tg.start_soon(run, "nobody", unique("nobody.") + ".z")
        assert results == {"busy": ["done"], "nobody": []}
