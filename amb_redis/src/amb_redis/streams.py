"""Streams mode: one stream per topic, read through consumer groups; durable and at least once.

- A topic's stream is ``<namespace>:<topic>``; each XADD carries ``MAXLEN ~ maxlen`` (approximate
  trimming is O(1) amortised; ``maxlen=0`` keeps everything). Fields: ``body`` (the payload bytes) and
  one field per header, so a program in another language can XADD ``body`` and be understood.
- A consumer group maps to a Redis group of the same name; a fan-out subscriber gets a group of its
  own (``fan.<uuid>``), destroyed when it closes. Each subscription is one consumer.
- ack = XACK (batched: sent together with the next read); nack(delay) = after ``delay`` the entry is
  XCLAIMed back to this consumer, which raises its delivery count; the attempt *is* that count.
- A consumer that died leaves entries pending: every member runs XAUTOCLAIM for entries idle longer
  than ``ack_wait`` (every ``ack_wait / 2`` seconds), so they reach a live member. A subscription that
  closes cleanly with entries unsettled marks them idle at once, so the heir claims them at its next
  claim round instead of waiting out ``ack_wait``.
- Wildcards: a wildcard subscription looks for matching streams when it opens and then every
  ``discover`` seconds (0.5 s by default), in AMB's topic registry and by an incremental SCAN that
  also finds streams other programs created (:mod:`._discovery`). A stream found after the
  subscription opened is read from the subscription's start on Redis's clock (``start="new"``) or
  from its beginning (``"earliest"``), so nothing published after the subscription is missed and
  nothing older is handed to a ``"new"`` subscriber.
- On a Redis Cluster, one XREADGROUP may only name keys of one slot. A subscription reading one
  stream blocks on it as on a single Redis; one reading several (a wildcard's) sends a
  non-blocking XREADGROUP per stream in one pipeline (redis-py sends each master its share) and,
  when none had anything, sleeps ``POLL`` seconds: that is its added latency.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from amb_core.backoff import Backoff
from amb_core.errors import DecodeError, TransportError
from amb_core.message import Message
from amb_core.topics import is_pattern
from amb_core.transport import Delivery, Subscription, SubscriptionSpec, decode_delivery

from ._cluster import server_time
from ._discovery import Discovery
from .errors import is_connection_error

if TYPE_CHECKING:
    from .transport import RedisTransport

__all__ = ["BODY", "StreamDelivery", "StreamSubscription", "entry_fields"]

log = logging.getLogger("amb.redis")
BODY = "body"
_IDLE_FOREVER = 2**40  # ms; XCLAIM ... IDLE: "long idle", so the next XAUTOCLAIM takes it
_seq = itertools.count()
SWEEP_EVERY = 60.0  # s between looks for consumers that died with nothing pending
GHOST_IDLE_MS = 600_000  # a consumer silent this long with nothing pending is gone
POLL = 0.02  # s between polls of a cluster subscription reading streams on several slots


def entry_fields(body: bytes, headers: dict[str, str]) -> list[Any]:
    """The XADD field/value list of an encoded message."""
    fields: list[Any] = [BODY, body]
    for name, value in headers.items():
        fields += (name, value)
    return fields


def _decode_entry(
    fields: dict[bytes, bytes] | None, topic: str, attempt: int
) -> tuple[Message, DecodeError | None]:
    if not fields:
        return Message(topic=topic, payload=b"", attempt=attempt), DecodeError("empty stream entry")
    body = fields.get(b"body")
    try:
        headers = {k.decode(): v.decode() for k, v in fields.items() if k != b"body"}
    except UnicodeDecodeError as exc:
        return Message(topic=topic, payload=body or b"", attempt=attempt), DecodeError(
            f"stream entry field is not UTF-8: {exc}"
        )
    if body is None:
        return Message(topic=topic, payload=b"", attempt=attempt), DecodeError(
            "stream entry has no 'body' field"
        )
    return decode_delivery(body, headers, topic, attempt)


class StreamDelivery(Delivery):
    __slots__ = ("_id", "_key", "_settled", "_sub")

    def __init__(
        self, sub: StreamSubscription, key: bytes, entry_id: bytes, fields: Any, attempt: int
    ) -> None:
        message, error = _decode_entry(fields, sub.topics.get(key, ""), attempt)
        self.message = message
        self.attempt = attempt
        self.error = error
        self._sub = sub
        self._key = key
        self._id = entry_id
        self._settled = False

    async def ack(self) -> None:
        if not self._settled:
            self._settled = True
            self._sub.settle(self._key, self._id)

    async def nack(self, delay: float | None = None) -> None:
        if not self._settled:
            self._settled = True
            self._sub.later(self._key, self._id, self.attempt, delay or 0.0)


class StreamSubscription(Subscription):
    """One consumer in one group over the streams matching one pattern."""

    def __init__(self, transport: RedisTransport, spec: SubscriptionSpec) -> None:
        self.transport = transport
        self.client = transport.client
        self.config = transport.config
        self.spec = spec
        self.fanout = spec.group is None
        self.group = spec.group or f"fan.{uuid.uuid4().hex}"
        self.consumer = f"{transport.id}.{next(_seq)}"
        self.wildcard = is_pattern(spec.pattern)
        self.topics: dict[bytes, str] = {}  # stream key -> topic
        self.buffer: deque[StreamDelivery] = deque()
        self.acks: dict[bytes, list[bytes]] = {}
        self.unsettled: dict[tuple[bytes, bytes], int] = {}
        self.delayed: list[tuple[float, int, bytes, bytes, int]] = []
        self.claim_every = max(0.05, spec.ack_wait / 2)
        self.next_claim = 0.0 if spec.group else float("inf")
        self.next_discover = float("inf")
        self.next_sweep = time.monotonic() + SWEEP_EVERY
        self.discovery: Discovery | None = None
        self.found_start = "0"  # where a stream found after opening is read from
        self.recover = False
        self.closed = False

    # -- setup ------------------------------------------------------------------------------------

    async def open(self) -> StreamSubscription:
        """Create the group(s); afterwards every message published is delivered."""
        start = "0" if self.spec.start == "earliest" else "$"
        if not self.wildcard:
            await self.join(self.spec.pattern, start)
            return self
        if start == "$":
            self.found_start = await self._just_before_now()
        self.discovery = Discovery(self.client, self.config, self.spec.pattern)
        await self.discover(start)
        return self

    async def _just_before_now(self) -> str:
        """The largest stream id of the millisecond before now on Redis's clock: a group created
        there reads every entry XADDed from now on (``*`` ids come from the same clock, never
        going back), and none older than a millisecond."""
        if self.config.cluster:
            seconds, micros = await server_time(self.client)
        else:
            seconds, micros = await self.client.time()
        return f"{int(seconds) * 1000 + int(micros) // 1000 - 1}-{2**64 - 1}"

    async def join(self, topic: str, start: str) -> None:
        key = self.config.key(topic).encode()
        try:
            await self.client.xgroup_create(key, self.group, id=start, mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.topics[key] = topic

    async def discover(self, start: str | None = None) -> None:
        """One discovery tick: join the matching streams it found that are not joined yet, at
        ``start`` (when opening) or at ``found_start``."""
        assert self.discovery is not None
        for topic in sorted(await self.discovery.step()):
            if self.config.key(topic).encode() not in self.topics:
                await self.join(topic, start or self.found_start)
        self.next_discover = time.monotonic() + self.config.discover

    # -- settling ---------------------------------------------------------------------------------

    def settle(self, key: bytes, entry_id: bytes) -> None:
        self.unsettled.pop((key, entry_id), None)
        self.acks.setdefault(key, []).append(entry_id)

    def later(self, key: bytes, entry_id: bytes, attempt: int, delay: float) -> None:
        self.unsettled.pop((key, entry_id), None)  # tracked in ``delayed`` until redelivered
        heapq.heappush(self.delayed, (time.monotonic() + delay, next(_seq), key, entry_id, attempt))

    async def _flush_acks(self, pipe: Any) -> None:
        acks, self.acks = self.acks, {}
        for key, ids in acks.items():
            pipe.xack(key, self.group, *ids)

    async def _redeliver_due(self) -> None:
        """XCLAIM nacked entries whose delay is over back to this consumer (count + 1)."""
        now = time.monotonic()
        due: list[tuple[bytes, bytes, int]] = []
        while self.delayed and self.delayed[0][0] <= now:
            _, _, key, entry_id, attempt = heapq.heappop(self.delayed)
            due.append((key, entry_id, attempt))
        if not due:
            return
        pipe = self.client.pipeline(transaction=False)
        for key, entry_id, _ in due:
            pipe.xclaim(key, self.group, self.consumer, 0, [entry_id])
        results = await pipe.execute(raise_on_error=False)
        for (key, entry_id, attempt), claimed in zip(due, results, strict=True):
            if isinstance(claimed, Exception):  # still pending: a claim round takes it later
                log.debug("XCLAIM of nacked %r %r failed: %r", key, entry_id, claimed)
                continue
            for entry_id, fields in claimed:
                self._push(key, entry_id, fields, attempt + 1)

    async def _claim_dead(self) -> None:
        """XAUTOCLAIM entries idle longer than ack_wait (their consumer died)."""
        self.next_claim = time.monotonic() + self.claim_every
        keys = list(self.topics)
        if not keys:
            return
        idle = int(self.spec.ack_wait * 1000)
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.xautoclaim(key, self.group, self.consumer, idle, "0-0", count=self.spec.prefetch)
        results = await pipe.execute(raise_on_error=False)
        claimed: list[tuple[bytes, list[Any]]] = []
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, Exception):  # a vanished group is recreated by the next read
                log.debug("XAUTOCLAIM on %r failed: %r", key, result)
                continue
            if not result[1]:
                continue
            claimed.append((key, result[1]))
        if not claimed:
            return
        pipe = self.client.pipeline(transaction=False)
        for key, entries in claimed:
            pipe.xpending_range(
                key, self.group, entries[0][0], entries[-1][0], len(entries) + 10, self.consumer
            )
        pending = await pipe.execute(raise_on_error=False)
        for (key, entries), info in zip(claimed, pending, strict=True):
            counts = (
                {}
                if isinstance(info, Exception)
                else {p["message_id"]: p["times_delivered"] for p in info}
            )
            for entry_id, fields in entries:
                if fields is None:
                    self.settle(key, entry_id)  # trimmed away while pending
                    continue
                self._push(key, entry_id, fields, max(2, counts.get(entry_id, 2)))

    async def _sweep_ghosts(self) -> None:
        """Delete group consumers that hold nothing and were silent for ``GHOST_IDLE_MS``: killed
        processes, whose entries XAUTOCLAIM already moved. A live consumer reads at least every
        ``block`` seconds; one deleted by mistake is recreated by Redis at its next read."""
        self.next_sweep = time.monotonic() + SWEEP_EVERY
        keys = list(self.topics)
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.xinfo_consumers(key, self.group)
        infos = await pipe.execute(raise_on_error=False)
        pipe = self.client.pipeline(transaction=False)
        ghosts = 0
        for key, consumers in zip(keys, infos, strict=True):
            if isinstance(consumers, Exception):
                continue
            for consumer in consumers:
                name = consumer["name"]
                if isinstance(name, bytes):
                    name = name.decode()
                if (
                    name != self.consumer
                    and consumer["pending"] == 0
                    and consumer["idle"] >= GHOST_IDLE_MS
                ):
                    pipe.xgroup_delconsumer(key, self.group, name)
                    ghosts += 1
        if ghosts:
            await pipe.execute(raise_on_error=False)
            log.info("removed %d silent consumer(s) from group %r", ghosts, self.group)

    def _push(self, key: bytes, entry_id: bytes, fields: Any, attempt: int) -> None:
        delivery = StreamDelivery(self, key, entry_id, fields, attempt)
        self.unsettled[(key, entry_id)] = attempt
        self.buffer.append(delivery)

    # -- reading ----------------------------------------------------------------------------------

    async def __anext__(self) -> Delivery:
        backoff = Backoff(initial=0.05, cap=1.0)
        while not self.buffer:
            if self.closed:
                raise StopAsyncIteration
            try:
                await self._fill()
                if backoff.failing:  # the first read since an error
                    self.transport._connection_back()
                backoff.reset()
            except Exception as exc:
                if is_connection_error(exc):
                    self.recover = True  # a read's reply may have been lost with the link
                    self.transport._connection_lost(exc)
                    log.warning(
                        "Redis stream read on %r failed: %r; retrying", self.spec.pattern, exc
                    )
                elif "NOGROUP" in str(exc):
                    log.warning(
                        "group %r vanished on %r (Redis restarted?); recreating",
                        self.group,
                        self.spec.pattern,
                    )
                    await self._rejoin()
                else:
                    raise TransportError(
                        f"Redis stream read on {self.spec.pattern!r} failed: {exc!r}"
                    ) from None
                await asyncio.sleep(backoff.next())
        return self.buffer.popleft()

    async def _rejoin(self) -> None:
        try:
            for key, topic in list(self.topics.items()):
                del self.topics[key]
                await self.join(topic, "0")
        except Exception as exc:
            log.debug("rejoining failed: %r", exc)
            if not self.wildcard:
                self.topics[self.config.key(self.spec.pattern).encode()] = self.spec.pattern

    async def _fill(self) -> None:
        now = time.monotonic()
        if self.delayed and self.delayed[0][0] <= now:
            await self._redeliver_due()
            if self.buffer:
                return
        if now >= self.next_discover:
            await self.discover()
        if now >= self.next_claim:
            await self._claim_dead()
            if now >= self.next_sweep:
                await self._sweep_ghosts()
            if self.buffer:
                return
        wait = min(self.config.block, self.next_discover - now, self.next_claim - now)
        if self.delayed:
            wait = min(wait, self.delayed[0][0] - now)
        block = max(1, int(wait * 1000))
        if not self.topics:
            await asyncio.sleep(block / 1000)
            return
        if self.recover:
            await self._recover_own()
            if self.buffer:
                return
        streams = dict.fromkeys(self.topics, ">")
        if self.config.cluster and len(streams) > 1:
            result = await self._poll_each(streams, block)
        elif self.acks:
            acks = self.acks
            pipe = self.client.pipeline(transaction=False)
            await self._flush_acks(pipe)
            pipe.xreadgroup(
                self.group, self.consumer, streams, count=self.spec.prefetch, block=block
            )
            try:
                results = await pipe.execute()
            except Exception:
                for key, ids in acks.items():  # not sent: send with the next read
                    self.acks.setdefault(key, []).extend(ids)
                raise
            result = results[-1]
        else:
            result = await self.client.xreadgroup(
                self.group, self.consumer, streams, count=self.spec.prefetch, block=block
            )
        if not result:
            return
        push = self._push
        for key, entries in result:
            for entry_id, fields in entries:
                push(key, entry_id, fields, 1)

    async def _poll_each(self, streams: dict[bytes, str], block: int) -> list[Any]:
        """A cluster's XREADGROUP over several slots: one non-blocking read per stream (acks
        first), in one pipeline; a short sleep when all were empty."""
        acks = self.acks
        pipe = self.client.pipeline(transaction=False)
        await self._flush_acks(pipe)
        for key, start in streams.items():
            pipe.xreadgroup(self.group, self.consumer, {key: start}, count=self.spec.prefetch)
        try:
            results = await pipe.execute()
        except Exception:
            for key, ids in acks.items():  # not sent: send with the next read
                self.acks.setdefault(key, []).extend(ids)
            raise
        result = [r for reply in results[len(results) - len(streams) :] for r in reply or ()]
        if not result and streams and next(iter(streams.values())) == ">":
            await asyncio.sleep(min(POLL, block / 1000))
        return result

    async def _recover_own(self) -> None:
        """After a lost connection, re-read this consumer's own pending entries (``XREADGROUP``
        from id 0): Redis may have handed out entries whose reply never arrived."""
        streams = dict.fromkeys(self.topics, "0")
        if self.config.cluster and len(streams) > 1:
            result = await self._poll_each(streams, 0)
        else:
            result = await self.client.xreadgroup(self.group, self.consumer, streams, count=10_000)
        self.recover = False
        for key, entries in result or ():
            for entry_id, fields in entries:
                if (key, entry_id) in self.unsettled:
                    continue
                if fields is None:
                    self.settle(key, entry_id)  # trimmed away while pending
                else:
                    self._push(key, entry_id, fields, 1)

    async def _leave(self) -> None:
        """Remove this consumer from the group where it holds nothing pending, so that restarts
        do not pile up consumer names (XGROUP DELCONSUMER would drop pending entries)."""
        keys = list(self.topics)
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.xpending_range(key, self.group, "-", "+", 1, self.consumer)
        pending = await pipe.execute(raise_on_error=False)
        pipe = self.client.pipeline(transaction=False)
        for key, entries in zip(keys, pending, strict=True):
            if isinstance(entries, list) and not entries:
                pipe.xgroup_delconsumer(key, self.group, self.consumer)
        await pipe.execute(raise_on_error=False)

    # -- closing ----------------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.transport._subscriptions.discard(self)
        for delivery in self.buffer:
            delivery._settled = True
        self.buffer.clear()
        try:
            if self.fanout:
                pipe = self.client.pipeline(transaction=False)
                for key in self.topics:
                    pipe.xgroup_destroy(key, self.group)
                await pipe.execute(raise_on_error=False)
                return
            pipe = self.client.pipeline(transaction=False)
            await self._flush_acks(pipe)
            # Unsettled entries: mark them long idle, so that the next claim round of any member
            # takes them (JUSTID: the heir's claim counts the redelivery, not this).
            left = list(self.unsettled) + [(k, i) for _, _, k, i, _ in self.delayed]
            for key, entry_id in left:
                pipe.xclaim(
                    key, self.group, self.consumer, 0, [entry_id], idle=_IDLE_FOREVER, justid=True
                )
            await pipe.execute(raise_on_error=False)
            if not left:
                await self._leave()
        except Exception as exc:
            log.debug("closing stream subscription %r: %r", self.spec.pattern, exc)
        finally:
            self.unsettled.clear()
            self.delayed.clear()
