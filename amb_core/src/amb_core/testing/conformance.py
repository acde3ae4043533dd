"""The conformance suite every transport passes against its real broker.

Subclass :class:`TransportConformance` in a test module, provide the ``make_transport`` fixture (a
callable returning a *new, unconnected* transport on the same broker at each call) and implement
:meth:`~ConformanceBase.inject_foreign` (publish as another program would: the raw driver, no AMB
metadata). Each case that depends on a capability runs only when the transport declares it, so a
declared capability is a proven one; the rest always run. Modelled on Watermill's universal pub/sub
tests, with its fault cases (reconnect, no-ack, concurrent close, publisher close, continue after a
subscriber closes) in :mod:`._fault_cases` and the capability proofs in :mod:`._capability_cases`.

Two more things a backend provides where it can: :meth:`~ConformanceBase.capture_raw` (the raw
driver reads back what a publish stored, proving ``headers``) and the ``restartable_broker`` fixture
(a broker process the fixture owns, for the cases that kill it; see :class:`RestartableBroker`).
Without them, the cases that need them skip and say why.

Knobs a subclass may override: ``many`` (messages in the volume cases), ``ack_wait`` (seconds before
a dead consumer's message is handed on), ``quiet`` (how long silence must last to prove that a message
was *not* delivered), ``timeout`` (the bound on every wait), ``duplicates_allowed`` (extra copies the
volume cases tolerate: 0, unless the broker documents duplicates in normal operation, as SQS standard
queues do; losing a message is never tolerated).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from ..bus import MessageBus
from ..deadletter import H_DLQ_ATTEMPTS, H_DLQ_REASON, H_DLQ_TOPIC
from ..errors import InvalidTopicError, NotConnectedError, RequestTimeoutError
from ..message import Message
from ..routing import Rule
from ._base import FAST_RETRY, ConformanceBase, RestartableBroker, _progress, wait_until
from ._capability_cases import CapabilityCases
from ._conversation_cases import ConversationCases
from ._deadline_cases import DeadlineCases
from ._fault_cases import FaultCases

__all__ = ["FAST_RETRY", "RestartableBroker", "TransportConformance", "wait_until"]


@pytest.mark.anyio
class TransportConformance(
    FaultCases, CapabilityCases, DeadlineCases, ConversationCases, ConformanceBase
):
    """Base class of every backend's conformance tests."""

    # -- basics -----------------------------------------------------------------------------------

    async def test_round_trip_keeps_payload_headers_and_metadata(
        self, make_transport: Any, topic: str
    ) -> None:
        async with self.open_bus(make_transport, name="agent-a") as bus:
            got = await self.collect(bus, f"{topic}.rt")
            payload = {
                "text": "héllo ✓",
                "n": 3,
                "f": 1.5,
                "list": [1, None, True],
                "nested": {"a": {}},
            }
            sent = await bus.publish(
                f"{topic}.rt",
                payload,
                headers={"trace": "t-1", "x-empty": ""},
                key="k1",
                ttl=60,
                priority=7,
                correlation_id="c-1",
            )
            await wait_until(lambda: len(got) == 1, self.timeout, "the message")
            message = got[0]
            assert message.payload == payload
            assert dict(message.headers) == {"trace": "t-1", "x-empty": ""}
            assert (message.id, message.topic, message.key) == (sent.id, sent.topic, "k1")
            assert (message.correlation_id, message.sender, message.priority) == (
                "c-1",
                "agent-a",
                7,
            )
            assert message.ttl == 60 and message.attempt == 1
            assert abs(message.timestamp - sent.timestamp) < 1e-3

    async def test_publish_many_sends_each_message_once(
        self, make_transport: Any, topic: str
    ) -> None:
        async with self.open_bus(make_transport, name="batcher") as bus:
            got = await self.collect(bus, f"{topic}.many")
            payloads: list[Any] = [*range(120), b"\x00bytes", {"n": 1}]
            sent = await bus.publish_many(
                f"{topic}.many", payloads, headers={"h": "v"}, key="one-key", priority=2
            )
            assert [m.payload for m in sent] == payloads
            assert len({m.id for m in sent}) == len(payloads), "each message has its own id"
            await wait_until(lambda: len(got) >= len(payloads), self.timeout, "the batch")
            await anyio.sleep(self.quiet)
            assert len(got) - len(payloads) <= self.duplicates_allowed
            assert {m.id for m in got} == {m.id for m in sent}
            assert all(
                dict(m.headers) == {"h": "v"}
                and (m.key, m.priority, m.sender) == ("one-key", 2, "batcher")
                for m in got
            )
            if self.caps(make_transport).ordered:
                assert [m.payload for m in got] == payloads, "one key keeps its order"
            assert await bus.publish_many(f"{topic}.many", []) == []
            with pytest.raises(InvalidTopicError):
                await bus.publish_many(f"{topic}.*", [1])

    async def test_bytes_and_scalar_payloads(self, make_transport: Any, topic: str) -> None:
        async with self.open_bus(make_transport) as bus:
            got = await self.collect(bus, f"{topic}.p")
            values: list[Any] = [b"\x00\xffraw", "text", 42, None, [1, 2]]
            for value in values:  # one key: an ordered transport keeps order per key
                await bus.publish(f"{topic}.p", value, key="payloads")
            await wait_until(lambda: len(got) == len(values), self.timeout, "all payloads")
            if self.caps(make_transport).ordered:
                assert [m.payload for m in got] == values
            else:
                assert sorted(map(repr, (m.payload for m in got))) == sorted(map(repr, values))

    async def test_topic_isolation(self, make_transport: Any, topic: str) -> None:
        async with self.open_bus(make_transport) as bus:
            got = await self.collect(bus, f"{topic}.a")
            await bus.publish(f"{topic}.b", "not for a")
            await bus.publish(f"{topic}.ab", "not for a either")
            await bus.publish(f"{topic}.a", "for a")
            await wait_until(lambda: len(got) >= 1, self.timeout, "the message for a")
            await anyio.sleep(self.quiet)
            assert [m.payload for m in got] == ["for a"]

    async def test_wildcards_are_exact(self, make_transport: Any, topic: str) -> None:
        async with self.open_bus(make_transport) as bus:
            one = await self.collect(bus, f"{topic}.*")
            tail = await self.collect(bus, f"{topic}.>")
            middle = await self.collect(bus, f"{topic}.*.end")
            for suffix in ("x", "x.y", "x.end", "x.y.end"):
                await bus.publish(f"{topic}.{suffix}", suffix)
            await wait_until(lambda: len(tail) == 4, self.timeout, "four messages on '>'")
            await anyio.sleep(self.quiet)
            assert [m.payload for m in one] == ["x"]
            assert sorted(m.payload for m in tail) == ["x", "x.end", "x.y", "x.y.end"]
            assert [m.payload for m in middle] == ["x.end"]

    async def test_invalid_topics_raise_at_the_call(self, make_transport: Any, topic: str) -> None:
        async with self.open_bus(make_transport) as bus:
            for bad in ("", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a/b"):
                with pytest.raises(InvalidTopicError):
                    await bus.publish(bad, 1)
            for bad_pattern in ("a.>.b", "a..*", "", "a.b*"):
                with pytest.raises(InvalidTopicError):
                    bus.subscribe(bad_pattern, print)

    # -- fan-out and groups ----------------------------------------------------------------------

    async def test_fan_out_every_subscriber_gets_everything(
        self, make_transport: Any, topic: str
    ) -> None:
        async with self.open_bus(make_transport) as one, self.open_bus(make_transport) as two:
            first = await self.collect(one, f"{topic}.fan")
            second = await self.collect(two, f"{topic}.fan")
            for i in range(50):
                await one.publish(f"{topic}.fan", i)
            await wait_until(
                lambda: len(first) == 50 and len(second) == 50,
                self.timeout,
                lambda: "fan-out: " + _progress(list(range(50)), first=first, second=second),
            )
            assert sorted(m.payload for m in first) == list(range(50))
            assert sorted(m.payload for m in second) == list(range(50))

    async def test_group_gives_each_message_to_one_member(
        self, make_transport: Any, topic: str
    ) -> None:
        self.require(self.caps(make_transport), "consumer_groups")
        async with self.open_bus(make_transport) as one, self.open_bus(make_transport) as two:
            first = await self.collect(one, f"{topic}.work", group=f"{topic}-workers")
            second = await self.collect(two, f"{topic}.work", group=f"{topic}-workers")
            for i in range(200):
                await one.publish(f"{topic}.work", i)
            await wait_until(lambda: len(first) + len(second) >= 200, self.timeout, "all work")
            await anyio.sleep(self.quiet)
            self.assert_each_once(first + second, list(range(200)), "the group")

    async def test_two_groups_each_get_everything(self, make_transport: Any, topic: str) -> None:
        self.require(self.caps(make_transport), "consumer_groups")
        async with self.open_bus(make_transport) as bus:
            a = await self.collect(bus, f"{topic}.g", group=f"{topic}-group-a")
            b = await self.collect(bus, f"{topic}.g", group=f"{topic}-group-b")
            for i in range(30):
                await bus.publish(f"{topic}.g", i)
            await wait_until(lambda: len(a) == 30 and len(b) == 30, self.timeout, "both groups")
            assert sorted(m.payload for m in a) == sorted(m.payload for m in b) == list(range(30))

    async def test_concurrent_publishers_and_subscribers_lose_nothing(
        self, make_transport: Any, topic: str
    ) -> None:
        publishers, per = 4, self.many // 4
        async with self.open_bus(make_transport) as bus, self.open_bus(make_transport) as other:
            seen = [await self.collect(b, f"{topic}.load.*") for b in (bus, other)]

            async def publish(n: int) -> None:
                for i in range(per):
                    await bus.publish(f"{topic}.load.p{n}", f"{n}-{i}")

            async with anyio.create_task_group() as tg:
                for n in range(publishers):
                    tg.start_soon(publish, n)
            expected = sorted(f"{n}-{i}" for n in range(publishers) for i in range(per))

            def everything_arrived() -> bool:
                return all(len(got) >= len(expected) for got in seen)

            await wait_until(everything_arrived, self.timeout, "every message")
            await anyio.sleep(self.quiet)
            for got in seen:
                self.assert_each_once(got, expected, "each subscriber")

    # -- request / reply -------------------------------------------------------------------------

    async def test_request_reply(self, make_transport: Any, topic: str) -> None:
        async with self.open_bus(make_transport) as server, self.open_bus(make_transport) as client:

            @server.subscribe(f"{topic}.svc.*")
            async def answer(message: Message) -> Any:
                return {"echo": message.payload, "topic": message.topic}

            await server.subscribe(f"{topic}.explicit", self._explicit_reply(server))
            await self.interest_spread()
            await server.publish(f"{topic}.warmup", None)  # a publish settles pending subscriptions
            reply = await client.request(f"{topic}.svc.echo", {"q": 1}, timeout=self.timeout)
            assert reply.payload == {"echo": {"q": 1}, "topic": f"{topic}.svc.echo"}
            explicit = await client.request(f"{topic}.explicit", "ping", timeout=self.timeout)
            assert explicit.payload == "pong:ping"
            assert explicit.headers.get("how") == "explicit"

    @staticmethod
    def _explicit_reply(bus: MessageBus) -> Callable[[Message], Any]:
        async def handler(message: Message) -> None:
            await bus.reply(message, f"pong:{message.payload}", headers={"how": "explicit"})

        return handler

    async def test_hundred_concurrent_requests_are_correlated(
        self, make_transport: Any, topic: str
    ) -> None:
        async with self.open_bus(make_transport) as server, self.open_bus(make_transport) as client:

            async def double(message: Message) -> Any:
                await anyio.sleep(0.001 * (message.payload % 7))  # replies come back out of order
                return message.payload * 2

            await server.subscribe(f"{topic}.double", double, concurrency=20)
            await self.interest_spread()
            results: dict[int, Any] = {}

            async def ask(i: int) -> None:
                results[i] = (
                    await client.request(f"{topic}.double", i, timeout=self.timeout)
                ).payload

            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(ask, i)
            assert results == {i: 2 * i for i in range(100)}

    async def test_request_resolves_only_with_its_own_reply(
        self, make_transport: Any, topic: str
    ) -> None:
        """A message on the requester's reply address that answers another request (another
        correlation id, as a late reply would) is not taken as the answer, natively or not."""
        async with self.open_bus(make_transport) as server, self.open_bus(make_transport) as client:

            async def decoy_then_answer(message: Message) -> Any:
                assert message.reply_to is not None
                await server.publish(
                    message.reply_to, {"decoy": True}, correlation_id="not-this-request"
                )
                await anyio.sleep(0.05)  # give the decoy a head start on the answer
                return {"answer": message.payload}

            await server.subscribe(f"{topic}.ask", decoy_then_answer)
            await self.interest_spread()
            await server.publish(f"{topic}.warmup", None)  # settles the pending subscription
            reply = await client.request(f"{topic}.ask", 42, timeout=self.timeout)
            assert reply.payload == {"answer": 42}

    async def test_request_timeout_is_typed_and_names_the_topic(
        self, make_transport: Any, topic: str
    ) -> None:
        async with self.open_bus(make_transport) as bus:
            await bus.subscribe(f"{topic}.slow", self._never_answers)
            started = time.monotonic()
            with pytest.raises(RequestTimeoutError) as caught:
                await bus.request(f"{topic}.slow", 1, timeout=0.5)
            assert isinstance(caught.value, TimeoutError)
            assert f"{topic}.slow" in str(caught.value)
            assert time.monotonic() - started < 0.5 + 5, "the timeout is honoured"

    @staticmethod
    async def _never_answers(message: Message) -> None:
        return None

    # -- retries and dead letters ----------------------------------------------------------------

    async def test_retry_then_success(self, make_transport: Any, topic: str) -> None:
        async with self.open_bus(make_transport) as bus:
            attempts: list[int] = []

            async def flaky(message: Message) -> None:
                attempts.append(message.attempt)
                if message.attempt < 3:
                    raise RuntimeError("not yet")

            await bus.subscribe(f"{topic}.flaky", flaky)
            dead = await self.collect(bus, f"dlq.{topic}.>")
            await bus.publish(f"{topic}.flaky", "x")
            await wait_until(lambda: len(attempts) >= 3, self.timeout, "three attempts")
            await anyio.sleep(self.quiet)
            assert attempts == [1, 2, 3]
            assert dead == []

    async def test_poison_message_goes_to_dlq_and_subscription_lives(
        self, make_transport: Any, topic: str
    ) -> None:
        async with self.open_bus(make_transport) as bus:
            handled: list[Any] = []

            async def picky(message: Message) -> None:
                if message.payload == "poison":
                    raise ValueError("cannot digest")
                handled.append(message.payload)

            await bus.subscribe(f"{topic}.food", picky)
            dead = await self.collect(bus, f"dlq.{topic}.>")
            await bus.publish(f"{topic}.food", "poison", headers={"origin": "test"})
            await wait_until(lambda: len(dead) == 1, self.timeout, "the dead letter")
            await bus.publish(f"{topic}.food", "bread")
            await wait_until(lambda: handled == ["bread"], self.timeout, "the next message")
            letter = dead[0]
            assert letter.topic == f"dlq.{topic}.food"
            assert letter.payload == "poison"
            assert letter.headers["origin"] == "test"
            assert letter.headers[H_DLQ_REASON] == "max_attempts"
            assert letter.headers[H_DLQ_TOPIC] == f"{topic}.food"
            assert letter.headers[H_DLQ_ATTEMPTS] == "3"
            assert "ValueError: cannot digest" in letter.headers["amb-dlq-error"]

    async def test_undecodable_bytes_go_to_dlq(self, make_transport: Any, topic: str) -> None:
        async with self.open_bus(make_transport) as bus:
            handled: list[Any] = []
            await bus.subscribe(f"{topic}.foreign", handled.append)
            dead = await self.collect(bus, f"dlq.{topic}.>")
            await self.inject_foreign(bus.transport, f"{topic}.foreign", b"\xff{not json")
            await self.inject_foreign(bus.transport, f"{topic}.foreign", b'{"plain": "json"}')
            await wait_until(lambda: len(dead) == 1 and len(handled) == 1, self.timeout, "both")
            assert dead[0].headers[H_DLQ_REASON] == "undecodable"
            assert dead[0].payload == b"\xff{not json"
            assert handled[0].payload == {"plain": "json"}, (
                "plain JSON from another program is understood"
            )

    async def test_expired_messages_are_dead_lettered_not_handled(
        self, make_transport: Any, topic: str
    ) -> None:
        async with self.open_bus(make_transport) as bus:
            handled = await self.collect(bus, f"{topic}.ttl")
            dead = await self.collect(bus, f"dlq.{topic}.>")
            await bus.publish(f"{topic}.ttl", "stale", ttl=1e-6)
            await bus.publish(f"{topic}.ttl", "fresh", ttl=600)
            await wait_until(lambda: len(dead) == 1 and len(handled) == 1, self.timeout, "both")
            assert handled[0].payload == "fresh"
            assert dead[0].headers[H_DLQ_REASON] == "expired"

    async def test_rejected_message_skips_retries(self, make_transport: Any, topic: str) -> None:
        from ..errors import RejectMessage

        async with self.open_bus(make_transport) as bus:
            calls: list[int] = []

            async def rejecting(message: Message) -> None:
                calls.append(message.attempt)
                raise RejectMessage("not my kind")

            await bus.subscribe(f"{topic}.rej", rejecting)
            dead = await self.collect(bus, f"dlq.{topic}.>")
            await bus.publish(f"{topic}.rej", 1)
            await wait_until(lambda: len(dead) == 1, self.timeout, "the dead letter")
            assert calls == [1]
            assert dead[0].headers[H_DLQ_REASON] == "rejected"

    async def test_dead_letters_can_be_listed_and_replayed(
        self, make_transport: Any, topic: str
    ) -> None:
        caps = self.caps(make_transport)
        if not caps.dead_letter_replay:
            self.require(caps, "replay")
        async with self.open_bus(make_transport) as bus:
            fail = True
            handled: list[Any] = []

            async def sometimes(message: Message) -> None:
                if fail:
                    raise RuntimeError("down")
                handled.append(message.payload)

            await bus.subscribe(f"{topic}.job", sometimes)
            watch = await self.collect(bus, f"dlq.{topic}.>")
            for i in range(3):
                await bus.publish(f"{topic}.job", i)
            await wait_until(lambda: len(watch) == 3, self.timeout, "three dead letters")
            listed = await bus.dead_letters.list(f"{topic}.>", idle=self.quiet + 0.5)
            assert sorted(m.payload for m in listed) == [0, 1, 2]
            fail = False
            assert await bus.dead_letters.replay(f"{topic}.>", idle=self.quiet + 0.5) == 3
            await wait_until(
                lambda: sorted(handled) == [0, 1, 2], self.timeout, "replayed messages"
            )
            assert await bus.dead_letters.replay(f"{topic}.>", idle=self.quiet) == 0, (
                "replayed once"
            )
            replayed = await bus.dead_letters.replayed(f"{topic}.>", idle=self.quiet + 0.5)
            if not caps.replay:
                assert replayed is None, "no record of replays where ordinary topics are not kept"
                return
            assert replayed == {m.id for m in listed}, "each replay is on record"
            handled.clear()
            assert (
                await bus.dead_letters.replay(f"{topic}.>", idle=self.quiet + 0.5, again=True) == 3
            )
            await wait_until(lambda: sorted(handled) == [0, 1, 2], self.timeout, "replayed again")

    # -- lifecycle -------------------------------------------------------------------------------

    async def test_unsubscribe_and_idempotent_close(self, make_transport: Any, topic: str) -> None:
        bus = MessageBus(make_transport(), retry=FAST_RETRY)
        await bus.connect()
        got: list[Message] = []
        subscriber = await bus.subscribe(f"{topic}.u", got.append)
        await bus.publish(f"{topic}.u", 1)
        await wait_until(lambda: len(got) == 1, self.timeout, "the first message")
        await subscriber.cancel()
        await bus.unsubscribe(subscriber)  # twice is fine
        await bus.publish(f"{topic}.u", 2)
        await anyio.sleep(self.quiet)
        assert [m.payload for m in got] == [1]
        await bus.aclose()
        await bus.aclose()
        with pytest.raises(NotConnectedError):
            await bus.publish(f"{topic}.u", 3)

    async def test_close_drains_handlers_in_flight(self, make_transport: Any, topic: str) -> None:
        finished: list[Any] = []
        started = anyio.Event()
        async with self.open_bus(make_transport) as bus:

            async def slow(message: Message) -> None:
                started.set()
                await anyio.sleep(0.3)
                finished.append(message.payload)

            await bus.subscribe(f"{topic}.drain", slow, group=f"{topic}-drainers")
            await bus.publish(f"{topic}.drain", "in flight")
            with anyio.fail_after(self.timeout):
                await started.wait()
        assert finished == ["in flight"], "close waited for the handler"
        caps = self.caps(make_transport)
        if caps.consumer_groups and caps.persistent:
            async with self.open_bus(make_transport) as again:
                redelivered = await self.collect(again, f"{topic}.drain", group=f"{topic}-drainers")
                await anyio.sleep(max(self.quiet, self.ack_wait * 1.5))
                assert redelivered == [], "a drained message was acknowledged"

    async def test_persistence_across_consumer_restart(
        self, make_transport: Any, topic: str
    ) -> None:
        self.require(self.caps(make_transport), "persistent", "consumer_groups")
        async with self.open_bus(make_transport) as first:
            await self.collect(first, f"{topic}.keep", group=f"{topic}-keepers")
        async with self.open_bus(make_transport) as publisher:
            for i in range(5):
                await publisher.publish(f"{topic}.keep", i)
        async with self.open_bus(make_transport) as second:
            got = await self.collect(second, f"{topic}.keep", group=f"{topic}-keepers")
            await wait_until(lambda: len(got) == 5, self.timeout, "messages kept while away")
            assert sorted(m.payload for m in got) == list(range(5))

    async def test_redelivery_after_consumer_dies_mid_handler(
        self, make_transport: Any, topic: str
    ) -> None:
        self.require(self.caps(make_transport), "at_least_once", "consumer_groups")
        started = anyio.Event()

        async def hang(message: Message) -> None:
            started.set()
            await anyio.sleep_forever()

        async with self.open_bus(make_transport, drain_timeout=0.05) as doomed:
            await doomed.subscribe(
                f"{topic}.crash", hang, group=f"{topic}-crashers", ack_wait=self.ack_wait
            )
            await doomed.publish(f"{topic}.crash", "survivor")
            with anyio.fail_after(self.timeout):
                await started.wait()
        # The handler was cancelled without an ack: another member must get the message.
        async with self.open_bus(make_transport) as heir:
            got = await self.collect(
                heir, f"{topic}.crash", group=f"{topic}-crashers", ack_wait=self.ack_wait
            )
            await wait_until(lambda: len(got) >= 1, self.timeout + self.ack_wait * 3, "redelivery")
            assert got[0].payload == "survivor"
            if self.caps(make_transport).delivery_count:
                assert got[0].attempt >= 2, "the broker counted the first delivery"

    async def test_order_is_kept_per_key(self, make_transport: Any, topic: str) -> None:
        self.require(self.caps(make_transport), "ordered")
        async with self.open_bus(make_transport) as bus:
            got = await self.collect(bus, f"{topic}.seq")
            for i in range(300):
                await bus.publish(f"{topic}.seq", i, key="same-key")
            await wait_until(lambda: len(got) == 300, self.timeout, "all in order")
            assert [m.payload for m in got] == list(range(300))

    async def test_start_earliest_reads_the_past(self, make_transport: Any, topic: str) -> None:
        self.require(self.caps(make_transport), "replay")
        async with self.open_bus(make_transport) as bus:
            for i in range(3):
                await bus.publish(f"{topic}.past", i)
            got = await self.collect(bus, f"{topic}.past", start="earliest")
            await wait_until(lambda: len(got) == 3, self.timeout, "retained messages")
            assert sorted(m.payload for m in got) == [0, 1, 2]

    # -- routing ---------------------------------------------------------------------------------

    async def test_content_routing(self, make_transport: Any, topic: str) -> None:
        async with self.open_bus(make_transport) as bus:
            urgent = await self.collect(bus, f"{topic}.urgent")
            normal = await self.collect(bus, f"{topic}.normal")
            other = await self.collect(bus, f"{topic}.other")
            await bus.route(
                f"{topic}.in.*",
                [
                    Rule(to=f"{topic}.urgent", when={"payload.priority": {"gte": 8}}),
                    Rule(to=f"{topic}.normal", when={"headers.kind": {"in": ["task", "job"]}}),
                ],
                unroutable=f"{topic}.other",
            )
            await bus.publish(f"{topic}.in.a", {"priority": 9}, headers={"kind": "task"})
            await bus.publish(f"{topic}.in.b", {"priority": 1}, headers={"kind": "job"})
            await bus.publish(f"{topic}.in.c", {"priority": 1}, headers={"kind": "chat"})
            await wait_until(
                lambda: len(urgent) + len(normal) + len(other) == 3, self.timeout, "routing"
            )
            assert [m.payload["priority"] for m in urgent] == [9]
            assert [m.headers["kind"] for m in normal] == ["job"]
            assert [m.headers["kind"] for m in other] == ["chat"]
            assert urgent[0].headers["amb-routed-from"] == f"{topic}.in.a"
