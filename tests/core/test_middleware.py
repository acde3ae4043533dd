"""Publish/receive middleware: order, what each edge sees, refusal, failures, plugins."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

from amb_core import (
    Capabilities,
    MemoryTransport,
    Message,
    MessageBus,
    Middleware,
    PluginError,
    RemoteHandlerError,
    RetryPolicy,
    hookimpl,
)
from amb_core.middleware import Call, Send
from amb_core.plugins import register_plugin, registries, reset_plugins
from amb_core.testing.conformance import wait_until

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(max_attempts=2, initial_delay=0.01, jitter=0)


class Recorder(Middleware):
    """Logs both edges and stamps a header on the way out."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def on_publish(self, message: Message, send: Send) -> None:
        self.log.append(f"{self.name}:pub:{message.topic}")
        await send(message.evolve(headers={**message.headers, f"x-{self.name}": "1"}))

    async def on_receive(self, message: Message, call: Call) -> Any:
        self.log.append(f"{self.name}:recv:{message.topic}")
        return await call(message)


class Refuse(Middleware):
    async def on_publish(self, message: Message, send: Send) -> None:
        if message.headers.get("tenant") is None:
            raise PermissionError("no tenant header")
        await send(message)


class Shout(Middleware):
    """Receive only: upper-cases a handler's string answer."""

    async def on_receive(self, message: Message, call: Call) -> Any:
        result = await call(message)
        return result.upper() if isinstance(result, str) else result


@pytest.fixture(autouse=True)
def _fresh_plugins():
    reset_plugins()
    yield
    reset_plugins()


async def test_first_layer_is_outermost_on_both_edges() -> None:
    log: list[str] = []
    got: list[Message] = []
    async with MessageBus(middleware=[Recorder("a", log), Recorder("b", log)]) as bus:
        await bus.subscribe("mw.t", got.append)
        await bus.publish("mw.t", 1)
        await wait_until(lambda: len(got) == 1, 5, "the message")
    assert log == ["a:pub:mw.t", "b:pub:mw.t", "a:recv:mw.t", "b:recv:mw.t"]
    assert got[0].headers["x-a"] == "1" and got[0].headers["x-b"] == "1"


async def test_requests_and_replies_pass_publish_middleware_but_the_inbox_skips_receive() -> None:
    log: list[str] = []
    seen: list[Message] = []

    def answer(message: Message) -> str:
        seen.append(message)
        return "pong"

    async with MessageBus(middleware=[Recorder("m", log), Shout()]) as bus:
        await bus.subscribe("mw.ask", answer)
        reply = await bus.request("mw.ask", "ping", timeout=5)
    assert reply.payload == "PONG"
    assert reply.headers["x-m"] == "1" and seen[0].headers["x-m"] == "1"
    received = [entry for entry in log if ":recv:" in entry]
    assert received == ["m:recv:mw.ask"], "the reply inbox must not run receive middleware"
    assert next(entry for entry in log if ":pub:" in entry) == "m:pub:mw.ask"
    assert any(entry.startswith("m:pub:_INBOX.") for entry in log)


async def test_publish_middleware_can_refuse_a_message() -> None:
    got: list[Message] = []
    async with MessageBus(middleware=[Refuse()]) as bus:
        await bus.subscribe("mw.r", got.append)
        with pytest.raises(PermissionError, match="no tenant"):
            await bus.publish("mw.r", 1)
        await bus.publish("mw.r", 2, headers={"tenant": "acme"})
        await wait_until(lambda: len(got) == 1, 5, "the allowed message")
    assert [m.payload for m in got] == [2]


async def test_publish_many_passes_each_message_through_publish_middleware() -> None:
    log: list[str] = []
    got: list[Message] = []
    async with MessageBus(middleware=[Recorder("a", log), Refuse()]) as bus:
        await bus.subscribe("mw.batch", got.append)
        with pytest.raises(PermissionError, match="no tenant"):
            await bus.publish_many("mw.batch", [1, 2])
        sent = await bus.publish_many("mw.batch", [3, 4, 5], headers={"tenant": "acme"})
        await wait_until(lambda: len(got) == 3, 5, "the batch")
    assert [m.payload for m in sent] == [3, 4, 5]
    assert [m.payload for m in got] == [3, 4, 5], "in order, and nothing of the refused batch"
    assert all(m.headers["x-a"] == "1" and m.headers["tenant"] == "acme" for m in got)
    assert log.count("a:pub:mw.batch") == 1 + 3, "each message met the middleware"


async def test_a_failing_receive_layer_counts_as_handler_failure() -> None:
    class Broken(Middleware):
        async def on_receive(self, message: Message, call: Call) -> Any:
            if message.topic == "mw.f" and message.payload == "bad":
                raise ValueError("middleware says no")
            return await call(message)

    handled: list[Any] = []
    dead: list[Message] = []
    async with MessageBus(middleware=[Broken()], retry=FAST) as bus:
        await bus.subscribe("mw.f", lambda m: handled.append(m.payload))
        await bus.subscribe("dlq.>", dead.append)
        await bus.publish("mw.f", "bad")
        await bus.publish("mw.f", "good")
        await wait_until(lambda: len(dead) == 1 and handled == ["good"], 5, "dead letter + good")
        with pytest.raises(RemoteHandlerError, match="middleware says no"):
            await bus.request("mw.f", "bad", timeout=5)
    assert "middleware says no" in dead[0].headers["amb-dlq-error"]


class NativeEcho(MemoryTransport):
    """A transport with 'native' request/reply that echoes the request's headers back."""

    capabilities = attrs.evolve(MemoryTransport.capabilities, native_request_reply=True)

    async def request(self, message: Message, timeout: float) -> Message:
        return Message(topic="echo", payload=message.payload, headers=message.headers)


async def test_native_requests_pass_publish_middleware() -> None:
    log: list[str] = []
    async with MessageBus(NativeEcho(), middleware=[Recorder("n", log)]) as bus:
        reply = await bus.request("mw.native", "hi", timeout=1)
    assert reply.headers["x-n"] == "1" and log == ["n:pub:mw.native"]
    assert isinstance(NativeEcho.capabilities, Capabilities)


async def test_plugins_contribute_middleware_and_a_bus_can_leave_them_out() -> None:
    log: list[str] = []

    class Plugin:
        @hookimpl
        def amb_register_middleware(self, registry: Any) -> None:
            registry.add(Recorder("plugin", log))

    register_plugin(Plugin(), name="mw-plugin")
    got: list[Message] = []
    async with MessageBus() as bus:
        await bus.subscribe("mw.p", got.append)
        await bus.publish("mw.p", 1)
        await wait_until(lambda: len(got) == 1, 5, "the message")
    assert got[0].headers["x-plugin"] == "1"
    async with MessageBus(plugin_middleware=False) as bus:
        await bus.subscribe("mw.p", got.append)
        await bus.publish("mw.p", 2)
        await wait_until(lambda: len(got) == 2, 5, "the second message")
    assert "x-plugin" not in got[1].headers


def test_only_middleware_instances_register() -> None:
    with pytest.raises(PluginError, match=r"not an amb_core\.middleware\.Middleware"):
        registries().middleware.add(object())  # type: ignore[arg-type]


async def test_plugin_layers_stay_outside_the_bus_own_and_can_be_left_out() -> None:
    """A bus's own middleware runs inside the plugins' layers; plugin_middleware=False drops them."""
    from amb_core.plugins import registries

    order: list[str] = []

    class Named(Middleware):
        def __init__(self, name: str) -> None:
            self.name = name

        async def on_publish(self, message: Message, send: Send) -> None:
            order.append(self.name)
            await send(message)

    registry = registries().middleware
    plugin = Named("plugin")
    registry.layers.append(plugin)
    try:
        async with MessageBus(middleware=[Named("own")]) as bus:
            await bus.publish("t.one", 1)
        async with MessageBus(middleware=[Named("own")], plugin_middleware=False) as bus:
            await bus.publish("t.two", 2)
    finally:
        registry.layers.remove(plugin)
    assert order == ["plugin", "own", "own"]


async def test_decision_hooks_subscription_context_and_per_bus_copies() -> None:
    from amb_core import RetryPolicy
    from amb_core.middleware import current_receive

    events: list[tuple[Any, ...]] = []

    class Watch(Middleware):
        bus: Any = None

        def for_bus(self, bus: MessageBus) -> Middleware:
            copy = Watch()
            copy.bus = bus
            return copy

        async def on_receive(self, message: Message, call: Call) -> Any:
            where = current_receive()
            assert where is not None and where.bus is self.bus
            events.append(("receive", where.pattern, where.group, message.attempt))
            return await call(message)

        def on_retry(self, message: Message, error: BaseException, delay: float) -> None:
            events.append(("retry", message.attempt, type(error).__name__, delay))

        def on_dead_letter(self, dead: Any) -> None:
            events.append(("dead", dead.reason, dead.attempts))

    retry = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.01, jitter=0)
    async with MessageBus(middleware=[Watch()], retry=retry) as bus:
        failed = anyio.Event()

        def poison(message: Message) -> None:
            raise ValueError("bad")

        await bus.subscribe("jobs.*", poison, group="workers")
        await bus.subscribe("dlq.>", lambda m: failed.set())
        await bus.publish("jobs.x", 1)
        with anyio.fail_after(5):
            await failed.wait()
    assert current_receive() is None
    assert events[:4] == [
        ("receive", "jobs.*", "workers", 1),
        ("retry", 1, "ValueError", 0.01),
        ("receive", "jobs.*", "workers", 2),
        ("dead", "max_attempts", 2),
    ]


async def test_on_request_wraps_the_whole_request_and_its_publish() -> None:
    log: list[str] = []

    class Timed(Middleware):
        async def on_request(self, topic: str, request: Any) -> Message:
            log.append(f"request:{topic}")
            reply = await request()
            log.append(f"reply:{reply.payload}")
            return reply

        async def on_publish(self, message: Message, send: Send) -> None:
            log.append(f"pub:{message.topic}")
            await send(message)

    async with MessageBus(middleware=[Timed()]) as bus:
        await bus.subscribe("mw.req", lambda m: m.payload * 2)
        reply = await bus.request("mw.req", 21, timeout=5)
        native = MessageBus(NativeEcho(), middleware=[Timed()])
        async with native:
            await native.request("mw.native", 1, timeout=1)
    assert reply.payload == 42
    # the responder's reply (same bus) passes on_publish too, before the requester has it
    assert log[:2] == ["request:mw.req", "pub:mw.req"]
    assert log[2].startswith("pub:_INBOX.") and log[3] == "reply:42"
    assert log[4:] == ["request:mw.native", "pub:mw.native", "reply:1"]
