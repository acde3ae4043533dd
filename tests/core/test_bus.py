"""Bus behaviour beyond the conformance suite: lifecycle, loops, concurrency, recovery, redaction."""

from __future__ import annotations

import anyio
import pytest

from amb_core import (
    ConfigurationError,
    Delivery,
    MemoryHub,
    MemoryTransport,
    Message,
    MessageBus,
    NotConnectedError,
    ReplyError,
    RetryPolicy,
    Subscription,
    SubscriptionSpec,
    UnsupportedError,
    UnsupportedEventLoopError,
)
from amb_core.testing.conformance import wait_until
from amb_core.urls import redact_url

from .test_ack_now import Source

pytestmark = pytest.mark.anyio


class AsyncioOnly(MemoryTransport):
    event_loops = frozenset({"asyncio"})


async def test_subscriptions_made_before_connect_start_with_it() -> None:
    bus = MessageBus()
    got: list[Message] = []
    bus.subscribe("early", got.append)
    with pytest.raises(NotConnectedError):
        await bus.publish("early", 1)
    async with bus:
        await bus.publish("early", 1)
        await wait_until(lambda: len(got) == 1, 5, "the message")


async def test_unsupported_event_loop_is_a_clear_error(anyio_backend: str) -> None:
    bus = MessageBus(AsyncioOnly())
    if anyio_backend == "trio":
        with pytest.raises(UnsupportedEventLoopError, match="runs on asyncio, not trio"):
            await bus.connect()
    else:
        async with bus:
            assert (await bus.publish("ok", 1)).topic == "ok"


async def test_concurrency_bounds_handlers_in_flight() -> None:
    async with MessageBus() as bus:
        running = peak = 0

        async def slow(message: Message) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await anyio.sleep(0.02)
            running -= 1

        done = await bus.subscribe("c", slow, concurrency=3)
        for i in range(12):
            await bus.publish("c", i)
        await anyio.sleep(0.3)
        assert peak == 3
        await done.cancel()
    with pytest.raises(ConfigurationError):
        MessageBus().subscribe("x", slow, concurrency=0)


async def test_sync_handler_and_reply_rules() -> None:
    async with MessageBus() as bus:
        await bus.subscribe("sync.add", lambda m: m.payload["a"] + m.payload["b"])
        assert (await bus.request("sync.add", {"a": 2, "b": 3}, timeout=5)).payload == 5
        with pytest.raises(ReplyError):
            await bus.reply(Message("not.a.request", 1), "answer")


async def test_close_cancels_handlers_that_outlive_the_drain_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled = anyio.Event()
    started = anyio.Event()

    async def stuck(message: Message) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    with anyio.fail_after(5):  # scopes around connect()/aclose() must enclose both
        bus = MessageBus(drain_timeout=0.05)
        await bus.connect()
        await bus.subscribe("stuck", stuck)
        await bus.publish("stuck", 1)
        await started.wait()
        await bus.aclose()
    assert cancelled.is_set()
    assert "1 handler(s) of 'stuck' did not finish within 0.05s; cancelled" in caplog.text


class _SlowToClose(MemoryTransport):
    """Its subscriptions take 0.3 s to close, whatever cancels them (as a Kafka consumer's close
    waits for a group join in progress)."""

    async def subscribe(self, spec: SubscriptionSpec) -> Subscription:
        sub = await super().subscribe(spec)
        close = sub.aclose

        async def slow_close() -> None:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.3)
            await close()

        sub.aclose = slow_close  # type: ignore[method-assign]
        return sub


async def test_a_slow_close_with_no_handler_running_is_not_blamed_on_handlers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The drain bound passing while the transport closes a subscription (no handler running)
    says so: it used to report handlers that did not finish."""
    with anyio.fail_after(5):
        bus = MessageBus(_SlowToClose(), drain_timeout=0.05)
        await bus.connect()
        await bus.subscribe("idle", print)
        await bus.aclose()
    assert "the subscription to 'idle' did not close within 0.05s" in caplog.text
    assert "no handler was running" in caplog.text
    assert "handler(s) of" not in caplog.text


async def test_earliest_needs_replay() -> None:
    class NoReplay(MemoryTransport):
        capabilities = MemoryTransport.capabilities.__class__(consumer_groups=True)

    async with MessageBus(NoReplay()) as bus:
        with pytest.raises(UnsupportedError):
            bus.subscribe("x", print, start="earliest")
        with pytest.raises(UnsupportedError):
            await bus.dead_letters.list()


class FlakySource(Subscription):
    """Fails once, then delivers one message."""

    def __init__(self, failures: list[int]) -> None:
        self.failures = failures
        self.sent = False

    async def __anext__(self) -> Delivery:
        if self.failures:
            self.failures.pop()
            raise OSError("connection reset")
        if self.sent:
            await anyio.sleep_forever()
        self.sent = True
        return Delivery(Message("flaky.t", "after recovery"))

    async def aclose(self) -> None:
        pass


class FlakyTransport(MemoryTransport):
    def __init__(self) -> None:
        super().__init__()
        self.failures = [1]
        self.opened = 0

    async def subscribe(self, spec: SubscriptionSpec) -> Subscription:
        self.opened += 1
        return FlakySource(self.failures)


async def test_a_failing_transport_subscription_is_reopened() -> None:
    transport = FlakyTransport()
    async with MessageBus(transport) as bus:
        got: list[Message] = []
        await bus.subscribe("flaky.t", got.append)
        await wait_until(lambda: len(got) == 1, 5, "recovery")
        assert transport.opened == 2
        assert got[0].payload == "after recovery"


async def test_slow_subscriber_applies_backpressure_not_loss() -> None:
    hub = MemoryHub(max_buffer=10)
    async with MessageBus(MemoryTransport(hub)) as bus:
        got: list[int] = []

        async def slow(message: Message) -> None:
            await anyio.sleep(0.001)
            got.append(message.payload)

        await bus.subscribe("bp", slow)
        for i in range(100):
            await bus.publish("bp", i)
            assert len(hub.fanout[0].items) <= 11
        await wait_until(lambda: len(got) == 100, 10, "all messages")
        assert got == list(range(100))


async def test_group_without_members_keeps_messages_for_later() -> None:
    hub = MemoryHub()
    async with MessageBus(MemoryTransport(hub)) as bus:
        sub = await bus.subscribe("kept", print, group="g")
        await sub.cancel()
        await bus.publish("kept", "while away")
        got: list[Message] = []
        await bus.subscribe("kept", got.append, group="g")
        await wait_until(lambda: len(got) == 1, 5, "the kept message")


async def test_retry_policy_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=5, initial_delay=0.1, multiplier=2, max_delay=0.3, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_urls_are_redacted_everywhere() -> None:
    assert redact_url("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("nats://tok3n@host:4222") == "nats://***@host:4222"
    assert "s3cret" not in redact_url("kafka://h:9092?sasl_password=s3cret&acks=all")
    assert "s3cret" not in redact_url("redis://:s3cret@[bad")


async def test_a_handler_that_replies_itself_and_returns_sends_one_reply() -> None:
    async with MessageBus() as bus:
        replies: list[Message] = []

        async def both(message: Message) -> str:
            await bus.reply(message, "explicit")
            return "returned"

        await bus.subscribe("both", both)
        await bus.subscribe("_INBOX.>", replies.append)
        answer = await bus.request("both", None, timeout=5)
        await anyio.sleep(0.05)
        assert answer.payload == "explicit"
        assert [m.payload for m in replies] == ["explicit"]
        assert bus._replied == set(), "nothing kept once the request is handled"


async def test_route_cache_is_bounded_under_unique_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    from amb_core import memory

    monkeypatch.setattr(memory, "_ROUTE_CACHE_LIMIT", 100)
    hub = MemoryHub()
    async with MessageBus(MemoryTransport(hub)) as bus:
        for i in range(1000):
            await bus.publish(f"unique.t{i}", i)
        assert len(hub._routes) <= 100


class AtMostOnce(MemoryTransport):
    """A transport whose nack would drop the message, like Redis pub/sub or core NATS."""

    capabilities = MemoryTransport.capabilities.__class__(native_wildcards=True)


async def test_at_most_once_transports_retry_locally_then_dead_letter() -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay=0.01, jitter=0)
    async with MessageBus(AtMostOnce(), retry=policy) as bus:
        attempts: list[int] = []
        dead: list[Message] = []

        async def flaky(message: Message) -> None:
            attempts.append(message.attempt)
            if message.payload == "poison" or message.attempt < 2:
                raise RuntimeError("no")

        await bus.subscribe("amo.t", flaky)
        await bus.subscribe("dlq.>", dead.append)
        await bus.publish("amo.t", "ok-on-second")
        await wait_until(lambda: attempts == [1, 2], 5, "a local retry")
        await bus.publish("amo.t", "poison")
        await wait_until(lambda: len(dead) == 1, 5, "the dead letter")
        assert attempts == [1, 2, 1, 2, 3]
        assert dead[0].headers["amb-dlq-attempts"] == "3"


async def test_requests_in_flight_fail_fast_when_the_bus_closes() -> None:
    outcome: list[BaseException] = []

    async def ask(bus: MessageBus) -> None:
        try:
            await bus.request("never.answers", 1, timeout=60)
        except NotConnectedError as exc:
            outcome.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, MessageBus() as bus:
            await bus.subscribe("never.answers", lambda m: None)
            tg.start_soon(ask, bus)
            await anyio.sleep(0.05)
    assert len(outcome) == 1 and "closed" in str(outcome[0])


class _Acked(Delivery):
    __slots__ = ("acked",)

    def __init__(self, message: Message) -> None:
        super().__init__(message)
        self.acked = False

    async def ack(self) -> None:
        self.acked = True


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_a_delivery_the_pattern_does_not_match_is_acknowledged_unhandled(
    concurrency: int,
) -> None:
    """Unless a subscription declares ``exact``, the bus checks each topic against the pattern: a
    broker's native match broader than AMB's (a regex or prefix subscription) let ``a.b.c`` and
    ``x.y`` through to ``a.*``."""
    deliveries = [_Acked(Message(topic, i)) for i, topic in enumerate(["a.b.c", "a.b", "x.y"])]

    class Broad(MemoryTransport):
        async def subscribe(self, spec: SubscriptionSpec) -> Subscription:
            return Source(list(deliveries))

    assert not Source.exact
    async with MessageBus(Broad()) as bus:
        got: list[str] = []
        await bus.subscribe("a.*", lambda m: got.append(m.topic), concurrency=concurrency)
        await wait_until(lambda: all(d.acked for d in deliveries), 5, "every delivery settled")
    assert got == ["a.b"]


async def test_the_in_memory_subscription_routes_exactly() -> None:
    """It declares ``exact`` (the bus skips its topic check): its queues take only matches."""
    async with MessageBus() as bus:
        got: list[str] = []
        sub = await bus.subscribe("a.*", lambda m: got.append(m.topic))
        assert type(sub._source).exact
        for topic in ("a.b.c", "a.b", "x.y", "a", "a.c"):
            await bus.publish(topic, None)
        await wait_until(lambda: len(got) >= 2, 5, "the matches")
        await anyio.sleep(0.05)
    assert got == ["a.b", "a.c"]
