"""Pub/sub mode: PUBLISH and (P)SUBSCRIBE on one connection per transport.

Lowest latency, at most once: Redis keeps nothing for a subscriber that is not connected. Every
message is one :func:`amb_core.wire.pack`-ed string (pub/sub has no headers). A pattern becomes a
Redis glob whose ``*`` crosses dots (``a.*`` -> ``amb:a.*`` also matches ``a.b.c``), so the glob is
only a pre-filter: :class:`PubSubSubscription` re-checks every message with AMB's matcher, and the
core checks again. Literal topics use SUBSCRIBE, which Redis matches by hash, not by glob.

Several subscriptions to one pattern share one Redis subscription. The reader waits for Redis to
confirm a (P)SUBSCRIBE before ``subscribe`` returns, so a message published afterwards is delivered.
On a lost connection redis-py reconnects and re-subscribes; messages sent meanwhile are lost, which is
what at-most-once means.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

from amb_core.backoff import Backoff
from amb_core.errors import DecodeError, TransportError
from amb_core.topics import is_pattern, matcher
from amb_core.transport import (
    Delivery,
    Subscription,
    SubscriptionSpec,
    decode_delivery,
    undecodable,
)
from amb_core.wire import unpack

from ._tasks import bounded, cancel_and_wait
from .config import RedisConfig
from .errors import is_connection_error

__all__ = ["PubSubHub", "PubSubSubscription"]

log = logging.getLogger("amb.redis")
MAX_BUFFER = 100_000
_DATA = (b"message", b"pmessage", b"smessage")


class PubSubSubscription(Subscription):
    """Deliveries for one ``subscribe`` call, fed by the hub's reader."""

    def __init__(self, hub: PubSubHub, spec: SubscriptionSpec, name: bytes) -> None:
        self.hub = hub
        self.spec = spec
        self.name = name
        self.match = matcher(spec.pattern)
        self.buffer: deque[Delivery] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False

    def feed(self, topic: str, data: bytes) -> None:
        if not self.match(topic):
            return  # the glob's broader match
        if len(self.buffer) >= MAX_BUFFER:
            log.warning(
                "subscriber of %r is %d messages behind; dropping", self.spec.pattern, MAX_BUFFER
            )
            return
        error: DecodeError | None
        try:
            body, headers = unpack(data)
        except DecodeError as exc:  # a malformed envelope: never handled, never half-read
            error = exc
        else:
            message, error = decode_delivery(body, headers, topic)
        if error is not None:  # dead-lettered with every byte that arrived, header line too
            message = undecodable(data, topic)
        self.buffer.append(Delivery(message, 1, error))
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def __anext__(self) -> Delivery:
        while not self.buffer:
            if self.closed:
                raise StopAsyncIteration
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.closed:
            raise StopAsyncIteration
        return self.buffer.popleft()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.wake()
        await self.hub.remove(self)


class PubSubHub:
    """The transport's one pub/sub connection and the reader that fans its messages out."""

    def __init__(
        self,
        client: Any,
        config: RedisConfig,
        lost: Callable[[BaseException], None] = lambda exc: None,
        back: Callable[[], None] = lambda: None,
        *,
        sharded: bool = False,
    ) -> None:
        self.config = config
        self.sharded = sharded  # SSUBSCRIBE exact topics (a cluster's master, :mod:`._shards`)
        self.lost = lost
        self.back = back
        self.topic_of = config.topic_of
        self.pubsub = client.pubsub(ignore_subscribe_messages=False)
        self.routes: dict[bytes, list[PubSubSubscription]] = {}
        self.confirm: dict[bytes, list[asyncio.Future[None]]] = {}
        self.task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()

    async def add(self, spec: SubscriptionSpec) -> PubSubSubscription:
        """Subscribe; returns once Redis confirmed, so later publishes are delivered.

        :raises TransportError: when Redis does not confirm within the connect timeout.
        """
        wildcard = is_pattern(spec.pattern)
        name = (
            self.config.glob(spec.pattern) if wildcard else self.config.key(spec.pattern)
        ).encode()
        sub = PubSubSubscription(self, spec, name)
        async with self.lock:
            subs = self.routes.get(name)
            if subs is not None:
                subs.append(sub)
                return sub
            self.routes[name] = [sub]
            future = asyncio.get_running_loop().create_future()
            self.confirm.setdefault(name, []).append(future)
            try:
                if wildcard:
                    await self.pubsub.psubscribe(name)
                elif self.sharded:
                    await self.pubsub.ssubscribe(name)
                else:
                    await self.pubsub.subscribe(name)
                if self.task is None:
                    self.task = asyncio.get_running_loop().create_task(self._read())
                with bounded(self.config.connect_timeout):
                    await future
            except Exception as exc:
                self.routes.pop(name, None)
                self.confirm.pop(name, None)
                raise TransportError(
                    f"Redis did not confirm the subscription to {spec.pattern!r}: {exc!r}"
                ) from None
        return sub

    async def adopt(self, name: bytes, subs: list[PubSubSubscription]) -> None:
        """Take over the subscribers of channel or pattern ``name`` from a hub whose node died
        (:mod:`._shards`); returns once this hub's node confirmed the (S|P)SUBSCRIBE.

        :raises TransportError: when it does not confirm within the connect timeout (``subs``
            are then not this hub's: the caller keeps them).
        """
        async with self.lock:
            existing = self.routes.get(name)
            if existing is not None:
                existing.extend(subs)
            else:
                self.routes[name] = list(subs)
                future = asyncio.get_running_loop().create_future()
                self.confirm.setdefault(name, []).append(future)
                try:
                    if subs and is_pattern(subs[0].spec.pattern):
                        await self.pubsub.psubscribe(name)
                    elif self.sharded:
                        await self.pubsub.ssubscribe(name)
                    else:
                        await self.pubsub.subscribe(name)
                    if self.task is None:
                        self.task = asyncio.get_running_loop().create_task(self._read())
                    with bounded(self.config.connect_timeout):
                        await future
                except Exception as exc:
                    self.routes.pop(name, None)
                    self.confirm.pop(name, None)
                    raise TransportError(
                        f"subscribing {name!r} was not confirmed: {exc!r}"
                    ) from None
            for sub in subs:
                sub.hub = self

    async def remove(self, sub: PubSubSubscription) -> None:
        async with self.lock:
            subs = self.routes.get(sub.name)
            if subs is None or sub not in subs:
                return
            subs.remove(sub)
            if subs:
                return
            del self.routes[sub.name]
            try:
                if is_pattern(sub.spec.pattern):
                    await self.pubsub.punsubscribe(sub.name)
                elif self.sharded:
                    await self.pubsub.sunsubscribe(sub.name)
                else:
                    await self.pubsub.unsubscribe(sub.name)
            except Exception as exc:
                log.debug("unsubscribing %r failed: %r", sub.name, exc)

    async def _read(self) -> None:
        """Read messages until cancelled, reconnecting through redis-py when the link breaks.

        The hot path reads the connection directly: ``get_message`` would arm a timeout, build a
        dict and await an observability hook for every message (about a third of the CPU spent per
        message). Control replies, and any read after an error, go through redis-py's own path,
        which reconnects and re-subscribes.
        """
        backoff = Backoff(initial=0.05, cap=1.0)
        failed = False  # a connection error since the last successful read
        direct = False
        can_direct = True  # False when this redis-py's read_response takes other arguments
        while True:
            try:
                if direct:
                    response = await self.pubsub.connection.read_response(
                        timeout=math.inf, disconnect_on_error=False, push_request=True
                    )
                    if response and response[0] in _DATA:
                        self._dispatch(response)
                        continue
                    message = await self.pubsub.handle_message(response)
                else:
                    message = await self.pubsub.get_message(timeout=1.0)
                    conn = self.pubsub.connection
                    direct = can_direct and conn is not None and conn.is_connected
                    if failed:  # the first read since an error: reconnected
                        failed = False
                        self.back()
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if direct and isinstance(exc, TypeError):
                    log.debug("direct pub/sub reads unavailable (%r); using get_message", exc)
                    direct = can_direct = False
                    continue
                direct = False
                if not is_connection_error(exc):
                    log.error("Redis pub/sub reader failed: %r", exc)
                else:
                    log.warning("Redis pub/sub connection lost: %r; reconnecting", exc)
                    self.lost(exc)
                    failed = True
                await asyncio.sleep(backoff.next())
                continue
            if message is None:
                continue
            kind = message["type"]
            if kind == "pmessage":
                self._dispatch(
                    [b"pmessage", message["pattern"], message["channel"], message["data"]]
                )
            elif kind in ("message", "smessage"):
                self._dispatch([b"message", message["channel"], message["data"]])
            elif kind in ("subscribe", "psubscribe", "ssubscribe"):
                for future in self.confirm.pop(message["channel"], ()):
                    if not future.done():
                        future.set_result(None)

    def _dispatch(self, response: list[Any]) -> None:
        """Hand ``[message, channel, data]`` or ``[pmessage, pattern, channel, data]`` out."""
        subs = self.routes.get(response[1])
        if subs:
            channel, data = response[-2], response[-1]
            topic = self.topic_of(channel).decode()
            for sub in subs:
                sub.feed(topic, data)

    async def aclose(self) -> None:
        for subs in list(self.routes.values()):
            for sub in list(subs):
                sub.closed = True
                sub.wake()
        self.routes.clear()
        task, self.task = self.task, None
        if task is not None:
            await cancel_and_wait(task, "the Redis pub/sub reader")
        try:
            await self.pubsub.aclose()
        except Exception as exc:
            log.debug("closing pub/sub connection: %r", exc)
